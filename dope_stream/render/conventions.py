"""Conventions every renderer backend follows, as numpy functions (the GLSL shaders of `raster`
implement the same formulas; `pathtrace` and the tests call these).


- Camera: OpenCV frame and intrinsics; integer pixel coordinates are pixel centres, as in
  `dope_stream.geometry.project_points`. `projection_matrix` maps camera points straight to clip
  space with image row v at window y = v + 0.5, so framebuffers hold the image top row first and
  read back without a flip.
- Environment frame: +Y up. A camera-frame direction d looks at environment direction
  `environment_from_camera(lighting) @ d` = R_y(yaw)^T @ world_from_camera @ d: `world_from_camera`
  places the camera in the world (a level camera looking along world -Z is diag(1, -1, -1)) and the
  environment is rotated by +yaw_deg about +Y (right-handed) within the world.
- Equirect lookup (`environment_direction_to_uv`, Mitsuba's `envmap` convention): for a unit
  environment direction (x, y, z), u = atan2(x, -z) / 2pi wrapped to [0, 1), v = acos(y) / pi;
  texture coordinates, so map column j spans u in [j/W, (j+1)/W) and row 0 (v = 0) is straight up.
- Radiance = map value * lighting.intensity. Display = `tonemap_to_srgb8`: the ACES filmic fit of
  Narkowicz (2015), clamped to [0, 1], then the sRGB transfer function; no further exposure.
- Shading: albedo = texture (or vertex colours, else white) * material.color; diffuse from the SH9
  irradiance of the map (`irradiance_sh9`), glossy from the map's mip chain in the reflection
  direction (mip chosen so a texel spans roughness^2 radians) times the split-sum GGX environment
  BRDF with F0 = mix(0.08 * specular, albedo, metallic). No shadows or inter-reflections.
- Photo background: the photo scaled to cover the frame (aspect kept, centre crop), shown as is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..geometry import spherical_uv

if TYPE_CHECKING:
    from ..geometry import Intrinsics
    from ..scene import Lighting

NEAR_M, FAR_M = 0.01, 100.0  # clip range; nothing in a DOPE scene lies outside it

# Real SH basis Y_lm (l <= 2) in the order the shader uses, as functions of a unit direction.
_SH_BASIS = (
    lambda x, y, z: np.full_like(x, 0.282095),
    lambda x, y, z: 0.488603 * y,
    lambda x, y, z: 0.488603 * z,
    lambda x, y, z: 0.488603 * x,
    lambda x, y, z: 1.092548 * x * y,
    lambda x, y, z: 1.092548 * y * z,
    lambda x, y, z: 0.315392 * (3.0 * z * z - 1.0),
    lambda x, y, z: 1.092548 * x * z,
    lambda x, y, z: 0.546274 * (x * x - y * y),
)
# Clamped-cosine convolution per band (Ramamoorthi & Hanrahan), divided by pi: diffuse radiance.
_SH_COSINE_OVER_PI = np.array([1.0, 2 / 3, 2 / 3, 2 / 3, 1 / 4, 1 / 4, 1 / 4, 1 / 4, 1 / 4])


def environment_from_camera(lighting: "Lighting") -> np.ndarray:
    """(3, 3) rotation taking camera-frame (OpenCV) directions to the environment map's frame."""
    yaw = np.radians(lighting.yaw_deg)
    c, s = np.cos(yaw), np.sin(yaw)
    world_from_environment = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])  # R_y(yaw)
    return world_from_environment.T @ np.asarray(lighting.world_from_camera, dtype=np.float64)


def environment_direction_to_uv(directions_cam: np.ndarray, lighting: "Lighting") -> np.ndarray:
    """(N, 3) camera-frame directions -> (N, 2) equirect texture coordinates (u, v) in [0, 1)."""
    d = np.asarray(directions_cam, dtype=np.float64) @ environment_from_camera(lighting).T
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    u = np.mod(np.arctan2(d[:, 0], -d[:, 2]) / (2 * np.pi), 1.0)
    v = np.arccos(np.clip(d[:, 1], -1.0, 1.0)) / np.pi
    return np.stack([u, v], axis=1)


def equirect_directions(height: int, width: int) -> np.ndarray:
    """(H, W, 3) unit environment-frame directions of the equirect pixel centres."""
    theta = (np.arange(height) + 0.5) / height * np.pi  # polar angle from +Y
    phi = (np.arange(width) + 0.5) / width * 2 * np.pi
    sin_t = np.sin(theta)[:, None]
    return np.stack(
        [sin_t * np.sin(phi)[None], np.cos(theta)[:, None] * np.ones((1, width)), -sin_t * np.cos(phi)[None]], axis=2
    )


def irradiance_sh9(hdri: np.ndarray) -> np.ndarray:
    """(9, 3) SH coefficients of irradiance / pi (diffuse radiance of a white surface) of a map."""
    height, width = hdri.shape[:2]
    d = equirect_directions(height, width)
    solid_angle = (2 * np.pi / width) * (np.pi / height) * np.sin((np.arange(height) + 0.5) / height * np.pi)
    weighted = hdri.astype(np.float64) * solid_angle[:, None, None]
    x, y, z = d[..., 0], d[..., 1], d[..., 2]
    radiance_sh = np.stack([np.einsum("hw,hwc->c", basis(x, y, z), weighted) for basis in _SH_BASIS])
    return radiance_sh * _SH_COSINE_OVER_PI[:, None]


def tonemap_to_srgb8(radiance: np.ndarray) -> np.ndarray:
    """Linear radiance (already times intensity) -> displayed sRGB uint8, as the shaders do it."""
    x = np.asarray(radiance, dtype=np.float64)
    mapped = np.clip((x * (2.51 * x + 0.03)) / (x * (2.43 * x + 0.59) + 0.14), 0.0, 1.0)
    encoded = np.where(mapped <= 0.0031308, 12.92 * mapped, 1.055 * mapped ** (1 / 2.4) - 0.055)
    return np.round(encoded * 255.0).astype(np.uint8)


def projection_matrix(intrinsics: "Intrinsics", near: float = NEAR_M, far: float = FAR_M) -> np.ndarray:
    """(4, 4) OpenCV camera frame -> clip space; pixel centre (u, v) lands at window (u+.5, v+.5)."""
    w, h = intrinsics.width, intrinsics.height
    return np.array(
        [
            [2 * intrinsics.fx / w, 0.0, 2 * (intrinsics.cx + 0.5) / w - 1.0, 0.0],
            [0.0, 2 * intrinsics.fy / h, 2 * (intrinsics.cy + 0.5) / h - 1.0, 0.0],
            [0.0, 0.0, (far + near) / (far - near), -2 * far * near / (far - near)],
            [0.0, 0.0, 1.0, 0.0],
        ]
    )


def photo_cover_transform(photo_size: tuple[int, int], image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(offset, scale) with photo texture coordinate = offset + window_xy * scale, for a photo of
    (width, height) scaled to cover an image of (width, height), aspect kept, centre cropped."""
    photo, image = np.asarray(photo_size, dtype=np.float64), np.asarray(image_size, dtype=np.float64)
    zoom = np.max(image / photo)  # output pixels per photo pixel
    scale = 1.0 / (zoom * photo)
    offset = 0.5 - 0.5 * image * scale
    return offset, scale


def fallback_uv(vertices: np.ndarray) -> np.ndarray:
    """UVs for a loaded mesh without any (so photo textures still wrap): spherical, about its up axis y."""
    return spherical_uv(vertices, pole_axis=1)
