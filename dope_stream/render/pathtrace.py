"""Photoreal backend: Mitsuba 3 path tracing of the very scene the raster backend draws.

What it shares with `raster` (so that one seed gives one scene, whichever backend renders it):
- Annotations: instance ids, depth and full pixel counts come from the raster backend's geometry
  pass (a `RasterRenderer` of its own, or the one `mix` shares), so JSON annotations are identical across backends;
  the path-traced image is pixel-aligned with them (same intrinsics, integer pixel coordinates are
  pixel centres).
- Environment orientation (`conventions.environment_from_camera`; Mitsuba's `envmap` uses the same
  equirect formula), radiance scale, display transform (`conventions.tonemap_to_srgb8`), the background
  photo's placement (`conventions.photo_cover_transform`), uv for meshes without any
  (`conventions.fallback_uv`) and albedo = texture (linear) * vertex colour / 255 * material.color.
  Except for meshes with both a texture and vertex colours: Mitsuba has no product of two textures
  (it would take a Python texture plugin), so those are shaded with the texture alone (a warning
  names them).

Mitsuba variant: `cuda_ad_rgb` when a CUDA GPU is usable, else `llvm_ad_rgb`; override with the
`variant` argument (config `pathtrace.variant`, e.g. `scalar_rgb`). Dr.Jit's
LLVM backend needs LLVM >= 16 (it finds Debian 12's LLVM 15 by itself and aborts inside codegen):
unless `DRJIT_LIBLLVM_PATH` is set, it is pointed at the newest LLVM >= 16 found (Debian package
`libllvm19`, installed by install.sh). Without one, the renderer logs one message and uses the slow
`scalar_rgb` variant instead of crashing.

Threads: Dr.Jit's LLVM backend and OIDN each use every core by default. With several renderer
processes on one machine, give each `cores / processes` threads (`threads`, config
`pathtrace.threads`, which `dope generate` sets for its worker processes): two workers on two cores render ~15-35 % more images per
second with one thread each than with two (benchmarks/bench_pathtrace.py).

Passes per frame: the colour (Mitsuba's `path` integrator, RGBA film) and, only when denoising, the
OIDN guides (an `aov` integrator alone: albedo + shading normal) with the same seed, so their
sub-pixel positions, and hence their anti-aliased edges, are the colour's. Nesting `path` inside
`aov` gives the same images in one pass but costs ~50 % more (it intersects every camera ray twice
and splats 10 film channels).

The Mitsuba scene is built once (`load_dict` costs ~0.3 s) with a pool of instances per mesh; each
frame moves instances (vertex buffers in the camera frame), parks unused ones far behind the
camera, and updates materials, camera and environment through `mi.traverse`. The pool grows (one
rebuild, ~0.7 s with the kernel recompilation) when a frame needs more copies of a mesh than it
holds; it is not pre-sized because every copy, parked or not, costs ~1 ms of kernel tracing per
pass and frame (its own BSDF in the material dispatch).
"""

from __future__ import annotations

import glob
import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ..errors import DopeError
from .protocol import RenderLayers
from .denoise import denoise_hdr
from .conventions import environment_from_camera, fallback_uv, photo_cover_transform, tonemap_to_srgb8
from .raster import RasterRenderer

if TYPE_CHECKING:
    from ..assets import AssetLibrary, MeshAsset
    from ..geometry import Intrinsics
    from ..scene import Instance, SceneSpec

log = logging.getLogger(__name__)

LLVM_PATH_ENV = "DRJIT_LIBLLVM_PATH"
MIN_LLVM_VERSION = 16  # Dr.Jit aborts in LLVM 15's instruction selection; 14 and older it refuses
LLVM_SEARCH_GLOBS = (
    "/usr/lib/x86_64-linux-gnu/libLLVM*.so*",
    "/usr/lib/aarch64-linux-gnu/libLLVM*.so*",
    "/usr/lib64/libLLVM*.so*",
    "/usr/lib/libLLVM*.so*",
    "/usr/local/lib/libLLVM*.so*",
    "/usr/lib/llvm-*/lib/libLLVM*.so*",
)
MAX_PATH_DEPTH = 5  # bounces: enough for inter-reflections between a few objects, cheap on a CPU
NEAR_CLIP = 1e-3  # metres; annotations' depth comes from the raster pass, not from these rays
PARKED_POSITION = (0.0, 0.0, -1.0e4)  # unused pool instances collapse to this point behind the camera
# Base-colour maps keep one shape per pool instance (Mitsuba's scalar variant cannot reshape a
# parameter): a mesh's own texture size, else this square for photo textures and plain colours.
PLAIN_MAP_SIZE = 256
AOV_CHANNELS = "albedo:albedo,normal:sh_normal"  # guide film channels: albedo xyz, normal xyz


# --- variant selection ----------------------------------------------------------------------------


def llvm_version(path: str) -> int | None:
    """Major LLVM version in a library file name (`libLLVM.so.19.1`, `libLLVM-19.so`), else None."""
    match = re.search(r"libLLVM(?:-(\d+)|\.so\.(\d+))", Path(path).name)
    if match is None:
        return None
    return int(match.group(1) or match.group(2))


def find_llvm_library(patterns: tuple[str, ...] = LLVM_SEARCH_GLOBS) -> str | None:
    """The newest LLVM library with version >= MIN_LLVM_VERSION on this machine, or None."""
    candidates = []
    for pattern in patterns:
        for path in glob.glob(pattern):
            version = llvm_version(path)
            if version is not None and version >= MIN_LLVM_VERSION and os.path.isfile(path):
                candidates.append((version, path))
    return max(candidates)[1] if candidates else None


def point_drjit_at_llvm(environ: dict[str, str] | os._Environ = os.environ) -> str | None:
    """Set DRJIT_LIBLLVM_PATH (before drjit is imported) unless the user did; returns the path."""
    if environ.get(LLVM_PATH_ENV):
        return environ[LLVM_PATH_ENV]
    found = find_llvm_library()
    if found is not None:
        environ[LLVM_PATH_ENV] = found
    return found


def select_variant(requested: str | None = None) -> str:
    """The Mitsuba variant to use: `requested`, else the fastest usable."""
    llvm_path = point_drjit_at_llvm()
    mi = import_mitsuba()
    import drjit as dr

    if requested is not None:
        if requested not in mi.variants():
            raise DopeError(
                f"Mitsuba variant '{requested}' (option pathtrace.variant) is not in this "
                f"build (choose one of: {', '.join(mi.variants())})"
            )
        return requested
    if "cuda_ad_rgb" in mi.variants() and dr.has_backend(dr.JitBackend.CUDA):
        return "cuda_ad_rgb"
    # Without a known-good library drjit would load whatever LLVM it finds (and abort on LLVM 15).
    if llvm_path is not None and dr.has_backend(dr.JitBackend.LLVM):
        return "llvm_ad_rgb"
    log.warning(
        "pathtrace: Mitsuba's LLVM backend is unavailable (%s); falling back to the scalar_rgb "
        "variant, which is much slower. Install LLVM >= %d (Debian/Ubuntu: apt-get install libllvm19) "
        "or set %s to its libLLVM.so.",
        f"{LLVM_PATH_ENV}={llvm_path} cannot be used" if llvm_path else f"no libLLVM >= {MIN_LLVM_VERSION} found",
        MIN_LLVM_VERSION,
        LLVM_PATH_ENV,
    )
    return "scalar_rgb"


def import_mitsuba():
    try:
        import mitsuba as mi
    except ImportError as err:
        raise DopeError(
            f"renderer 'pathtrace' needs Mitsuba 3 ({err}): pip install 'dope-stream[pathtrace]', "
            "or use --renderer raster"
        ) from None
    return mi


# --- colour ---------------------------------------------------------------------------------------


def srgb_to_linear(srgb8: np.ndarray) -> np.ndarray:
    """uint8 sRGB -> float32 linear (the exact sRGB transfer function, through a 256-entry table)."""
    return _SRGB_TO_LINEAR_TABLE[srgb8]


def _srgb_table() -> np.ndarray:
    c = np.arange(256, dtype=np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


_SRGB_TO_LINEAR_TABLE = _srgb_table()


# --- the scene pool -------------------------------------------------------------------------------


@dataclass
class PathTracePasses:
    """Film of one path-traced frame, (H, W) or (H, W, 3) float32 arrays."""

    color: np.ndarray  # linear radiance; black where the environment is hidden (photo mode)
    alpha: np.ndarray  # share of the pixel's samples that hit a surface (photo mode), else 1
    albedo: np.ndarray | None  # first-hit albedo (OIDN guide; None when not asked for)
    normal: np.ndarray | None  # first-hit shading normal (OIDN guide; None when not asked for)


@dataclass
class _Slot:
    """One pooled Mitsuba mesh: a copy of `mesh_key` that a frame may place or park."""

    name: str  # shape id in the Mitsuba scene
    mesh_key: str
    parked: bool = False


class PathTraceRenderer:
    """`Renderer` backend: Mitsuba 3 path tracer + OIDN; annotations from the raster backend."""

    def __init__(
        self,
        assets: "AssetLibrary",
        variant: str | None = None,
        denoise_quality: str = "fast",
        threads: int | None = None,
        raster: RasterRenderer | None = None,
    ):
        """threads: Dr.Jit and OIDN threads (None: every core). raster: the renderer whose geometry
        pass gives the annotations (`mix` shares its own); None: one of our own."""
        self.assets = assets
        self.variant = select_variant(variant)
        self.mi = import_mitsuba()
        self.mi.set_variant(self.variant)
        self.denoise_quality = denoise_quality
        self.threads = threads
        if self.threads is not None:
            import drjit as dr

            dr.set_thread_count(self.threads)  # process-wide: this process renders with this many
        self._owns_raster = raster is None
        self._raster = raster or RasterRenderer(assets)  # exact ids/depth/pixel counts, as `raster` draws them
        self._pool_sizes: dict[str, int] = {}
        self._size: tuple[int, int] | None = None
        self._scene = None
        self._params = None
        self._slots: list[_Slot] = []
        self._hdri_key: str | None = None
        self._albedo_maps: dict[tuple[str, tuple[int, int]], np.ndarray] = {}  # (source, shape) -> linear map
        self._environment_maps = _padded_environment_maps(assets.hdris)
        self._color_integrators = {
            hide: self.mi.load_dict({"type": "path", "max_depth": MAX_PATH_DEPTH, "hide_emitters": hide})
            for hide in (False, True)
        }
        self._guide_integrator = self.mi.load_dict({"type": "aov", "aovs": AOV_CHANNELS})
        both = sorted(key for key, mesh in assets.meshes.items() if mesh.texture is not None and mesh.vertex_colors is not None)
        if both:
            log.warning("pathtrace: %s have a texture and vertex colours; shaded with the texture only", ", ".join(both))
        log.info("pathtrace: Mitsuba %s, variant %s", self.mi.__version__, self.variant)

    # -- Renderer protocol --

    def render(self, scene: "SceneSpec") -> RenderLayers:
        # One sample per pixel: the raster image is discarded, so its anti-aliasing pass would be waste.
        geometry = self._raster.render(replace(scene, spp=1))
        passes = self.render_passes(scene, guides=scene.denoise)
        color = passes.color
        if scene.denoise:
            denoised = denoise_hdr(color, passes.albedo, passes.normal, self.denoise_quality, self.threads)
            color = np.maximum(denoised, 0.0)
        if scene.background.mode == "photo":
            rgb = self._display(scene, color, passes.alpha)
        else:
            rgb = tonemap_to_srgb8(color)
        return RenderLayers(rgb, geometry.instance_id, geometry.depth, geometry.full_pixel_counts)

    def render_passes(self, scene: "SceneSpec", guides: bool = True) -> PathTracePasses:
        """The raw path-traced film of `scene` (no denoising, no display transform); the OIDN guides
        (albedo, normal) only when `guides`."""
        self._prepare(scene)
        hide_environment = scene.background.mode == "photo"  # the photo replaces it behind objects
        film = self._film(scene, self._color_integrators[hide_environment])
        albedo = normal = None
        if guides:
            guide_film = self._film(scene, self._guide_integrator)
            albedo, normal = guide_film[..., :3], guide_film[..., 3:6]
        return PathTracePasses(film[..., :3], film[..., 3], albedo, normal)

    def _film(self, scene: "SceneSpec", integrator: Any) -> np.ndarray:
        # The same seed gives every pass the same sub-pixel sample positions.
        image = self.mi.render(self._scene, spp=scene.spp, seed=scene.index, integrator=integrator)
        return np.asarray(image, dtype=np.float32)

    def close(self) -> None:
        if self._owns_raster:
            self._raster.close()
        self._scene = self._params = None
        self._slots = []

    # -- per-frame scene update --

    def _prepare(self, scene: "SceneSpec") -> None:
        needed: dict[str, int] = {}
        for instance in scene.instances:
            needed[instance.mesh_key] = needed.get(instance.mesh_key, 0) + 1
        size = (scene.intrinsics.width, scene.intrinsics.height)
        if self._scene is None or size != self._size or any(n > self._pool_sizes.get(k, 0) for k, n in needed.items()):
            for key, count in needed.items():  # grow geometrically so the scene is rebuilt only a few times
                if count > self._pool_sizes.get(key, 0):
                    self._pool_sizes[key] = max(count, 2 * self._pool_sizes.get(key, 0))
            self._build(size)
        self._update_camera(scene.intrinsics)
        self._update_environment(scene)
        self._update_instances(scene)
        self._params.update()

    def _build(self, size: tuple[int, int]) -> None:
        mi = self.mi
        log.debug("pathtrace: building the Mitsuba scene (%s)", self._pool_sizes)
        width, height = size
        description: dict[str, Any] = {
            "type": "scene",
            "sensor": {
                "type": "perspective",
                "fov_axis": "x",
                "fov": 60.0,  # set per frame from the intrinsics
                "near_clip": NEAR_CLIP,
                "far_clip": 1.0e3,
                # Mitsuba's camera looks along +z with +x to the left and +y up; flipping x and y
                # makes its world frame the OpenCV camera frame (x right, y down, z forward).
                "to_world": mi.ScalarTransform4f().scale([-1.0, -1.0, 1.0]),
                "film": {
                    "type": "hdrfilm",
                    "width": width,
                    "height": height,
                    "pixel_format": "rgba",
                    "rfilter": {"type": "box"},  # uncorrelated pixel noise, which OIDN needs
                },
                "sampler": {"type": "independent"},
            },
            "environment": {
                "type": "envmap",
                "bitmap": mi.Bitmap(next(iter(self._environment_maps.values()))[:, 1:-1]),  # replaced per frame
            },
        }
        self._slots = []
        for mesh_key, count in sorted(self._pool_sizes.items()):
            for copy in range(count):
                slot = _Slot(f"mesh{len(self._slots)}", mesh_key)
                description[slot.name] = self._mesh_shape(slot, self.assets.meshes[mesh_key])
                self._slots.append(slot)
        self._scene = mi.load_dict(description)
        self._params = mi.traverse(self._scene)
        self._size = size
        self._hdri_key = None

    def _mesh_shape(self, slot: _Slot, mesh: "MeshAsset"):
        """A Mitsuba mesh holding `mesh`'s topology, uv and material slots (parked until used)."""
        mi = self.mi
        if mesh.vertex_colors is not None and mesh.texture is None:
            base_color = {"type": "mesh_attribute", "name": "vertex_color"}
        else:  # one bitmap for textures, photos and plain colours (white; Mitsuba needs >= 2x2)
            white = np.ones((*_map_shape(mesh), 3), dtype=np.float32)
            base_color = {"type": "bitmap", "data": mi.TensorXf(white), "raw": True}
        props = mi.Properties()
        props["bsdf"] = mi.load_dict({"type": "principled", "base_color": base_color})
        shape = mi.Mesh(
            slot.name,
            vertex_count=len(mesh.vertices),
            face_count=len(mesh.faces),
            has_vertex_normals=True,
            has_vertex_texcoords=True,
            props=props,
        )
        if mesh.vertex_colors is not None and mesh.texture is None:
            shape.add_attribute("vertex_color", 3, np.zeros(3 * len(mesh.vertices), np.float32))
        buffers = mi.traverse(shape)
        buffers["faces"] = np.ascontiguousarray(mesh.faces, dtype=np.uint32).ravel()
        buffers["vertex_positions"] = _parked_positions(len(mesh.vertices))
        buffers["vertex_normals"] = np.ascontiguousarray(mesh.normals, dtype=np.float32).ravel()
        # OBJ uv has v up from the image's bottom row; Mitsuba's bitmap row 0 is v = 0.
        uv = mesh.uv if mesh.uv is not None else fallback_uv(mesh.vertices)
        buffers["vertex_texcoords"] = np.column_stack([uv[:, 0], 1.0 - uv[:, 1]]).astype(np.float32).ravel()
        buffers.update()
        slot.parked = True
        return shape

    def _update_camera(self, intrinsics: "Intrinsics") -> None:
        # Mitsuba's pixel x spans [x, x + 1) with its centre at x + 0.5; OpenCV's integer u is the
        # centre, so film x = u + 0.5 and the principal point sits cx + 0.5 from the film's left.
        # Mitsuba counts the offset from the film centre with the opposite sign (checked against the
        # raster silhouette in tests/test_pathtrace.py).
        width, height = intrinsics.width, intrinsics.height
        self._set_varying("sensor.x_fov", float(np.degrees(2.0 * np.arctan(0.5 * width / intrinsics.fx))))
        self._set_varying("sensor.principal_point_offset_x", float(0.5 - (intrinsics.cx + 0.5) / width))
        self._set_varying("sensor.principal_point_offset_y", float(0.5 - (intrinsics.cy + 0.5) / height))

    def _update_environment(self, scene: "SceneSpec") -> None:
        lighting = scene.lighting
        if lighting.hdri_key != self._hdri_key:
            self._params["environment.data"] = self.mi.TensorXf(self._environment_maps[lighting.hdri_key])
            self._hdri_key = lighting.hdri_key
        self._set_varying("environment.scale", float(lighting.intensity))
        # Mitsuba looks up the map at to_world^-1 * direction with the same equirect formula as
        # raster's `equirect_uv`, so to_world is the inverse (transpose) of env_from_camera.
        rotation = np.eye(4)
        rotation[:3, :3] = np.asarray(environment_from_camera(lighting), dtype=np.float64).T
        self._set_varying("environment.to_world", self.mi.ScalarTransform4f(rotation))

    def _update_instances(self, scene: "SceneSpec") -> None:
        free: dict[str, list[_Slot]] = {}
        for slot in self._slots:
            free.setdefault(slot.mesh_key, []).append(slot)
        aspect = scene.intrinsics.fy / scene.intrinsics.fx
        for instance in scene.instances:
            slot = free[instance.mesh_key].pop(0)
            self._place(slot, instance, aspect)
        for slots in free.values():
            for slot in slots:
                if not slot.parked:
                    count = len(self.assets.meshes[slot.mesh_key].vertices)
                    self._params[f"{slot.name}.vertex_positions"] = _parked_positions(count)
                    slot.parked = True

    def _place(self, slot: _Slot, instance: "Instance", aspect: float) -> None:
        mesh = self.assets.meshes[instance.mesh_key]
        rotation, translation = instance.pose.rotation, instance.pose.translation
        positions = (mesh.vertices.astype(np.float64) * instance.scale) @ rotation.T + translation
        normals = mesh.normals.astype(np.float64) @ rotation.T
        if aspect != 1.0:
            # Mitsuba's pinhole has square pixels: stretch the scene along y instead (fy != fx), which
            # projects exactly like the OpenCV camera; normals take the inverse stretch.
            positions[:, 1] *= aspect
            normals[:, 1] /= aspect
            normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        self._params[f"{slot.name}.vertex_positions"] = positions.astype(np.float32).ravel()
        self._params[f"{slot.name}.vertex_normals"] = normals.astype(np.float32).ravel()
        slot.parked = False
        self._set_material(slot, mesh, instance)

    def _set_material(self, slot: _Slot, mesh: "MeshAsset", instance: "Instance") -> None:
        material, prefix = instance.material, f"{slot.name}.bsdf"
        color = np.asarray(material.color, dtype=np.float32)
        if mesh.vertex_colors is not None and mesh.texture is None:
            # As in raster: vertex colours multiply the albedo as they are (not sRGB-decoded).
            self._params[f"{slot.name}.vertex_color"] = (mesh.vertex_colors / np.float32(255.0) * color).ravel()
        else:
            self._params[f"{prefix}.base_color.data"] = self.mi.TensorXf(self._albedo_map(mesh, material.texture_key) * color)
        self._set_varying(f"{prefix}.roughness.value", float(material.roughness))
        self._set_varying(f"{prefix}.metallic.value", float(material.metallic))
        self._set_varying(f"{prefix}.specular", float(material.specular))

    def _albedo_map(self, mesh: "MeshAsset", texture_key: str | None) -> np.ndarray:
        """Linear base-colour map of the slot's shape: a background photo, the mesh's texture, or white."""
        shape = _map_shape(mesh)
        if texture_key is not None and texture_key not in self.assets.backgrounds:
            raise DopeError(f"texture: unknown background photo '{texture_key}' (not in the asset library)")
        source = texture_key if texture_key is not None else mesh.key
        if (source, shape) not in self._albedo_maps:
            if texture_key is not None:
                photo = cv2.resize(self.assets.backgrounds[texture_key], shape[::-1], interpolation=cv2.INTER_AREA)
                self._albedo_maps[source, shape] = srgb_to_linear(photo)
            elif mesh.texture is not None:
                self._albedo_maps[source, shape] = srgb_to_linear(mesh.texture)
            else:
                self._albedo_maps[source, shape] = np.ones((*shape, 3), dtype=np.float32)
        return self._albedo_maps[source, shape]

    def _set_varying(self, key: str, value: Any) -> None:
        """Set a parameter that changes every frame as an opaque JIT variable: a literal would be
        baked into the kernel and force a recompilation (~0.5 s) per frame."""
        import drjit as dr

        variable = type(self._params[key])(value)
        dr.make_opaque(variable)
        self._params[key] = variable

    # -- display --

    def _display(self, scene: "SceneSpec", color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """Objects over the background photo: blend in display space by the rendered coverage."""
        photo = cover_photo(self.assets.backgrounds[scene.background.photo_key], scene.intrinsics)
        coverage = alpha[..., None]
        objects = tonemap_to_srgb8(color / np.maximum(coverage, 1e-6)).astype(np.float32)
        blended = coverage * objects + (1.0 - coverage) * photo.astype(np.float32)
        return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def cover_photo(photo: np.ndarray, intrinsics: "Intrinsics") -> np.ndarray:
    """(H, W, 3) uint8: the photo scaled to cover the image and centre-cropped, as raster shows it."""
    width, height = intrinsics.width, intrinsics.height
    photo_size = np.array([photo.shape[1], photo.shape[0]], dtype=np.float64)
    offset, scale = photo_cover_transform(tuple(photo_size), (width, height))
    zoom = 1.0 / (scale * photo_size)  # output pixels per photo pixel (equal on both axes)
    # Shrink with area averaging first (raster samples a mip chain), then place with sub-pixel care:
    # output pixel u samples photo texture coordinate offset + (u + 0.5) * scale.
    resized_size = np.maximum(np.round(photo_size * zoom), 1).astype(int)
    resized = cv2.resize(photo, tuple(int(s) for s in resized_size), interpolation=cv2.INTER_AREA if zoom[0] < 1 else cv2.INTER_LINEAR)
    step = scale * resized_size  # resized pixels per output pixel (~1)
    start = offset * resized_size + 0.5 * step - 0.5
    warp = np.array([[step[0], 0.0, start[0]], [0.0, step[1], start[1]]])
    return cv2.warpAffine(
        resized, warp, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )


def _parked_positions(count: int) -> np.ndarray:
    return np.tile(np.asarray(PARKED_POSITION, dtype=np.float32), count)


def _map_shape(mesh: "MeshAsset") -> tuple[int, int]:
    return mesh.texture.shape[:2] if mesh.texture is not None else (PLAIN_MAP_SIZE, PLAIN_MAP_SIZE)


def _padded_environment_maps(hdris: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every map resampled to the largest one's size (one parameter shape for all), in the layout of
    Mitsuba's `envmap` data parameter: one wrap-around column on each side (last, ..., first)."""
    height, width = max((hdri.shape[:2] for hdri in hdris.values()), key=lambda size: size[0] * size[1])
    maps = {}
    for key, hdri in hdris.items():
        if hdri.shape[:2] != (height, width):
            hdri = cv2.resize(hdri, (width, height), interpolation=cv2.INTER_LINEAR)
        maps[key] = np.ascontiguousarray(np.concatenate([hdri[:, -1:], hdri, hdri[:, :1]], axis=1), dtype=np.float32)
    return maps
