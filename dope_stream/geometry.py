"""Frames, units and the DOPE cuboid convention: the one place every stage takes them from.

Conventions (see README "Conventions"):
- Camera frame: OpenCV (x right, y down, z forward), metres. Pixel (u, v) = (column, row) and the
  integer coordinate is the *centre* of a pixel (OpenCV's convention for K).
- A pose (R, t) maps model-frame points into the camera frame: p_cam = R @ p_model + t.
- Quaternions are stored (x, y, z, w), as in the DOPE/NVISII JSON.
- The cuboid is built around the model's axis-aligned bounding-box centre in the model axes;
  keypoint order is CUBOID_SIGNS below (8 corners, then the centre).
- Keypoint maps (network outputs, training targets) have one cell per `stride` x `stride` input
  pixels; see `pixel_to_map` / `map_to_pixel`.

This module imports numpy and scipy only, so every other stage can depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

# Sign of (x, y, z) of each keypoint relative to the AABB centre, in half-extents (DOPE order).
CUBOID_SIGNS = np.array(
    [
        [+1, -1, +1],
        [-1, -1, +1],
        [-1, +1, +1],
        [+1, +1, +1],
        [+1, -1, -1],
        [-1, -1, -1],
        [-1, +1, -1],
        [+1, +1, -1],
        [0, 0, 0],
    ],
    dtype=np.float64,
)
NUM_KEYPOINTS = 9  # 8 corners + centroid
NUM_AFFINITY = 16  # (x, y) unit vector corner -> centroid for each of the 8 corners

# The 12 edges of the cuboid as pairs of corner indices (for overlays).
CUBOID_EDGES = (
    (0, 1), (1, 2), (2, 3), (3, 0),  # front face (+z)
    (4, 5), (5, 6), (6, 7), (7, 4),  # back face (-z)
    (0, 4), (1, 5), (2, 6), (3, 7),  # sides
)


@dataclass(frozen=True)
class Cuboid:
    """An object's 3D bounding cuboid in its own model frame (metres)."""

    center: tuple[float, float, float]  # AABB centre in the model frame
    extent: tuple[float, float, float]  # full AABB size along model x, y, z

    def keypoints(self) -> np.ndarray:
        """(9, 3) keypoints in the model frame, DOPE order."""
        return np.asarray(self.center) + 0.5 * CUBOID_SIGNS * np.asarray(self.extent)

    def keypoints_centered(self) -> np.ndarray:
        """(9, 3) keypoints in the cuboid's own frame (origin at the AABB centre); used by PnP."""
        return 0.5 * CUBOID_SIGNS * np.asarray(self.extent)

    def to_dict(self) -> dict:
        return {"center": [float(c) for c in self.center], "extent": [float(e) for e in self.extent]}

    @staticmethod
    def from_dict(d: dict) -> "Cuboid":
        return Cuboid(tuple(float(c) for c in d["center"]), tuple(float(e) for e in d["extent"]))

    @staticmethod
    def from_points(points: np.ndarray) -> "Cuboid":
        lo, hi = points.min(axis=0), points.max(axis=0)
        return Cuboid(tuple((lo + hi) / 2.0), tuple(hi - lo))


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole camera, OpenCV convention, for an image of width x height pixels."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @property
    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)

    @staticmethod
    def from_fov(width: int, height: int, fov_deg: float) -> "Intrinsics":
        """Square pixels, principal point at the image centre, `fov_deg` across the width."""
        f = 0.5 * width / np.tan(np.radians(fov_deg) / 2.0)
        return Intrinsics(f, f, (width - 1) / 2.0, (height - 1) / 2.0, width, height)

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """The same camera for the image resized to width x height (pixel centres kept aligned)."""
        sx, sy = width / self.width, height / self.height
        cx, cy = resized_pixels(np.array([self.cx, self.cy]), (sx, sy))
        return Intrinsics(self.fx * sx, self.fy * sy, float(cx), float(cy), width, height)

    def to_json(self) -> dict:
        """The `camera_data` block of the DOPE/NVISII annotation."""
        return {
            "width": self.width,
            "height": self.height,
            "intrinsics": {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy},
        }

    @staticmethod
    def from_json(camera_data: dict) -> "Intrinsics":
        k = camera_data["intrinsics"]
        return Intrinsics(
            float(k["fx"]), float(k["fy"]), float(k["cx"]), float(k["cy"]),
            int(camera_data["width"]), int(camera_data["height"]),
        )


@dataclass(frozen=True)
class Pose:
    """Rigid transform model -> camera: p_cam = rotation @ p_model + translation (metres)."""

    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)

    @staticmethod
    def from_quaternion_xyzw(quaternion_xyzw, translation) -> "Pose":
        # scipy's Rotation uses (x, y, z, w) order and column-vector matrices, matching the JSON.
        # (pyrr's Matrix33.from_quaternion returns the transpose, a classic source of wrong poses.)
        rotation = Rotation.from_quat(np.asarray(quaternion_xyzw, dtype=np.float64)).as_matrix()
        return Pose(rotation, np.asarray(translation, dtype=np.float64))

    @property
    def quaternion_xyzw(self) -> np.ndarray:
        return Rotation.from_matrix(self.rotation).as_quat()

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) model points -> (N, 3) camera points."""
        return points @ self.rotation.T + self.translation

    def moved_origin(self, offset_model: np.ndarray) -> "Pose":
        """Pose of a frame whose origin is `offset_model` in this model frame (same axes).

        Model pose -> cuboid pose: `pose.moved_origin(cuboid.center)`;
        cuboid pose -> model pose: `pose.moved_origin(-cuboid.center)`.
        """
        return Pose(self.rotation, self.translation + self.rotation @ np.asarray(offset_model, dtype=np.float64))

    def with_distance_scaled(self, factor: float, model_point: np.ndarray) -> "Pose":
        """The same rotation, with `model_point` (model frame) moved along its line of sight to
        `factor` times its distance from the camera: a distance bias corrected, the view unchanged."""
        point_cam = self.apply(np.asarray(model_point, dtype=np.float64)[None])[0]
        return Pose(self.rotation, self.translation + (factor - 1.0) * point_cam)

    @property
    def matrix(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = self.rotation, self.translation
        return m


def project_points(points_cam: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """(N, 3) camera-frame points -> (N, 2) pixel coordinates (u, v)."""
    z = points_cam[:, 2:3]
    uv = points_cam[:, :2] / z
    return uv * [intrinsics.fx, intrinsics.fy] + [intrinsics.cx, intrinsics.cy]


def projected_cuboid(cuboid: Cuboid, pose: Pose, intrinsics: Intrinsics) -> np.ndarray:
    """(9, 2) pixel coordinates of the cuboid keypoints of an object at `pose` (model frame)."""
    return project_points(pose.apply(cuboid.keypoints()), intrinsics)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix drawn uniformly from SO(3) (Shoemake's method via scipy)."""
    return Rotation.random(random_state=rng).as_matrix()


def rotation_near(rng: np.random.Generator, reference: np.ndarray, max_angle_deg: float) -> np.ndarray:
    """`reference` turned by an angle uniform in [0, max_angle_deg] about a uniformly drawn axis
    (applied in the reference's outer frame); max_angle_deg >= 180 is exactly `random_rotation`."""
    if max_angle_deg >= 180.0:
        return random_rotation(rng)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.radians(rng.uniform(0.0, max_angle_deg))
    return Rotation.from_rotvec(angle * axis).as_matrix() @ reference


# --- keypoint-map coordinates -------------------------------------------------------------------
# Map cell j covers input pixels [stride*j, stride*j + stride - 1]. Two conventions place a keypoint
# at pixel u on the map, and weights follow the one their targets were drawn with:
# - "centre" (this project, and the original 2018 DOPE weights, whose decoder adds 0.4395 cells):
#   cell j stands for its centre pixel stride*j + (stride - 1) / 2, so u sits at
#   (u - (stride - 1) / 2) / stride;
# - "corner" (the reference's current train.py, which resizes keypoints with the image): u / stride.
# Training targets place Gaussians at exactly this continuous coordinate and the decoder inverts it
# with the same convention (stored with the model), so a perfect prediction decodes without bias.
MAP_CONVENTIONS = ("centre", "corner")
DEFAULT_MAP_CONVENTION = "centre"


def map_origin(stride: int, convention: str = DEFAULT_MAP_CONVENTION) -> float:
    """Pixel coordinate of map coordinate 0 under `convention`."""
    return {"centre": (stride - 1) / 2.0, "corner": 0.0}[convention]


def resized_pixels(uv: np.ndarray, scale) -> np.ndarray:
    """Pixel coordinates (..., 2) in an image resized by `scale` (sx, sy), pixel centres kept aligned
    (OpenCV's resize: x -> (x + 0.5) * s - 0.5)."""
    return (np.asarray(uv, dtype=np.float64) + 0.5) * np.asarray(scale, dtype=np.float64) - 0.5


def pixel_to_map(uv: np.ndarray, stride: int, convention: str = DEFAULT_MAP_CONVENTION) -> np.ndarray:
    return (np.asarray(uv, dtype=np.float64) - map_origin(stride, convention)) / stride


def map_to_pixel(xy: np.ndarray, stride: int, convention: str = DEFAULT_MAP_CONVENTION) -> np.ndarray:
    return np.asarray(xy, dtype=np.float64) * stride + map_origin(stride, convention)


def spherical_uv(vertices: np.ndarray, pole_axis: int) -> np.ndarray:
    """(N, 2) texture coordinates of a spherical projection about the AABB centre (seams are fine for
    the random textures it is used with), in the dtype of `vertices`. u is the azimuth around axis
    `pole_axis` (0, 1, 2 = x, y, z), v the polar angle from it. Callers pass the mesh's up axis:
    z for trimesh's primitives (built around z), y for loaded meshes (OBJ and glTF are y-up)."""
    d = vertices - 0.5 * (vertices.min(axis=0) + vertices.max(axis=0))
    d = d / (np.linalg.norm(d, axis=1, keepdims=True) + 1e-12)
    # The two other axes in cyclic order, so the azimuth turns counter-clockwise about the pole.
    across, along = d[:, (pole_axis + 2) % 3], d[:, (pole_axis + 1) % 3]
    return np.stack([np.arctan2(across, along) / (2 * np.pi) + 0.5, np.arccos(np.clip(d[:, pole_axis], -1, 1)) / np.pi], 1)
