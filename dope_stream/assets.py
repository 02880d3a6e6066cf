"""Assets: target meshes, distractor meshes, HDR environment maps and background photos.

Everything is loaded once per worker into plain numpy arrays (`AssetLibrary`), checked on the way
in: a broken or empty mesh, a missing texture, an empty or unreadable folder each raise one
`DopeError` naming the file. Meshes are kept in their own model frame (never re-centred): the
cuboid is the AABB in that frame (`MeshAsset.cuboid`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .errors import DopeError
from .geometry import Cuboid, spherical_uv

if TYPE_CHECKING:
    from .config import GenerateConfig

log = logging.getLogger(__name__)

MESH_SUFFIXES = (".obj", ".ply", ".glb", ".gltf", ".stl", ".off")
HDR_SUFFIXES = (".hdr", ".exr")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
JPEG_END = b"\xff\xd9"  # the EOI marker that closes every complete JPEG
GENERIC_MESH_STEMS = ("model", "textured", "mesh", "model_normalized")


@dataclass
class MeshAsset:
    """A triangle mesh in metres, ready to upload to any renderer.

    vertices/normals: (N, 3) float32; faces: (M, 3) uint32; uv: (N, 2) float32 or None;
    texture: (H, W, 3) uint8 RGB or None; vertex_colors: (N, 3) uint8 RGB or None.
    """

    key: str
    vertices: np.ndarray
    normals: np.ndarray
    faces: np.ndarray
    uv: np.ndarray | None = None
    texture: np.ndarray | None = None
    vertex_colors: np.ndarray | None = None
    source: str = ""

    @cached_property  # asked for every instance of every frame; the vertices never change
    def cuboid(self) -> Cuboid:
        return Cuboid.from_points(self.vertices.astype(np.float64))

    @cached_property
    def hull(self) -> np.ndarray:
        """(N, 3) convex hull vertices (float64): what `scene: tabletop` physics collides with."""
        import trimesh

        try:
            hull = trimesh.Trimesh(vertices=self.vertices.astype(np.float64), process=False).convex_hull
        except Exception as err:  # qhull raises on flat or degenerate point sets
            raise DopeError(f"mesh {self.source or self.key} cannot rest on a table: no convex hull ({err})") from None
        if hull.volume <= 1e-12:
            raise DopeError(f"mesh {self.source or self.key} cannot rest on a table: it is flat (no volume)")
        return farthest_points(np.asarray(hull.vertices, dtype=np.float64), HULL_POINTS)


HULL_POINTS = 64  # collision hull size: physics time grows with it; 64 keeps a box's corners and a sphere within 5 mm


def farthest_points(points: np.ndarray, count: int) -> np.ndarray:
    """`count` of `points` picked greedily farthest from those already picked (from the first):
    extreme points first, so a convex hull keeps its shape within millimetres."""
    if len(points) <= count:
        return points
    chosen = [int(np.argmax(np.linalg.norm(points - points.mean(axis=0), axis=1)))]
    distance = np.linalg.norm(points - points[chosen[0]], axis=1)
    for _ in range(count - 1):
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, np.linalg.norm(points - points[chosen[-1]], axis=1))
    return points[chosen]


@dataclass
class AssetLibrary:
    """Everything a renderer needs, by key. `targets` maps class name -> mesh key."""

    meshes: dict[str, MeshAsset] = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)
    distractors: list[str] = field(default_factory=list)
    hdris: dict[str, np.ndarray] = field(default_factory=dict)  # (H, W, 3) float32 linear RGB
    backgrounds: dict[str, np.ndarray] = field(default_factory=dict)  # (H, W, 3) uint8 RGB

    def cuboid(self, class_name: str) -> Cuboid:
        return self.meshes[self.targets[class_name]].cuboid

    @property
    def procedural(self) -> list[str]:
        """Keys of the procedural distractor shapes (always present)."""
        return [key for key in self.meshes if key.startswith(PROCEDURAL_PREFIX)]


def class_name_for(path: Path) -> str:
    """`.../003_cracker_box/model.obj` -> `003_cracker_box`; `.../drill.ply` -> `drill`."""
    return path.parent.name if path.stem.lower() in GENERIC_MESH_STEMS else path.stem


def load_mesh(path: Path, key: str, scale: float = 1.0) -> MeshAsset:
    """Load a mesh with trimesh; textured (UV + image) or vertex-coloured or plain."""
    import trimesh

    path = Path(path)
    if path.is_dir():
        inside = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.suffix.lower() in MESH_SUFFIXES)
        raise DopeError(f"mesh {path} is a folder; give a mesh file ({', '.join(inside[:3]) or 'it holds none'}"
                        f"{', ...' if len(inside) > 3 else ''})")
    if not path.is_file():
        raise DopeError(f"mesh {path} does not exist")
    _check_referenced_textures(path)
    try:
        mesh = trimesh.load(path, force="mesh", process=False)
    except Exception as err:  # trimesh raises many types for broken files
        raise DopeError(f"mesh {path} cannot be read: {err}") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0 or len(mesh.vertices) == 0:
        raise DopeError(f"mesh {path} has no triangles")
    if not np.isfinite(mesh.vertices).all():
        raise DopeError(f"mesh {path} has non-finite vertex coordinates")
    vertices = (np.asarray(mesh.vertices, dtype=np.float64) * scale).astype(np.float32)
    uv, texture, colors = _appearance(mesh, path)
    return MeshAsset(
        key=key,
        vertices=vertices,
        normals=np.asarray(mesh.vertex_normals, dtype=np.float32),
        faces=np.asarray(mesh.faces, dtype=np.uint32),
        uv=uv,
        texture=texture,
        vertex_colors=colors,
        source=str(path),
    )


def _check_referenced_textures(path: Path) -> None:
    """An OBJ whose MTL names a texture file that is missing is an error (trimesh only warns)."""
    if path.suffix.lower() != ".obj":
        return
    for line in path.read_text(errors="replace").splitlines()[:2000]:
        if line.startswith("mtllib"):
            mtl = path.parent / line.split(maxsplit=1)[1].strip()
            if not mtl.is_file():
                raise DopeError(f"mesh {path}: material file {mtl} does not exist")
            for mtl_line in mtl.read_text(errors="replace").splitlines():
                parts = mtl_line.split()
                if parts and parts[0] == "map_Kd":
                    texture = mtl.parent / parts[-1]
                    if not texture.is_file():
                        raise DopeError(f"mesh {path}: texture {texture} (named in {mtl.name}) does not exist")


def _appearance(mesh, path: Path) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    visual = mesh.visual
    if getattr(visual, "kind", None) == "texture" and visual.uv is not None and len(visual.uv) == len(mesh.vertices):
        image = getattr(visual.material, "image", None)
        if image is None:
            base = getattr(visual.material, "baseColorTexture", None)
            image = base
        if image is not None:
            texture = np.asarray(image.convert("RGB"), dtype=np.uint8)
            return np.asarray(visual.uv, dtype=np.float32), texture, None
    if getattr(visual, "kind", None) == "vertex":
        colors = np.asarray(visual.vertex_colors, dtype=np.uint8)[:, :3]
        if len(colors) == len(mesh.vertices) and colors.std() > 0:
            return None, None, colors
    return None, None, None


# Weights of the vertex attributes in the simplification error (which is relative to the mesh size):
# a normal that turns by 0.2 rad, or a uv that slides by 1/100 of the texture, costs what a
# surface shift of 1 % of the mesh size costs. Normals matter most: scanned meshes carry fine shading
# in them, and without this weight glossy highlights move where triangles merge.
NORMAL_WEIGHT, UV_WEIGHT, COLOR_WEIGHT = 0.05, 1.0, 1.0


def simplify_mesh(mesh: MeshAsset, relative_error: float) -> MeshAsset:
    """The mesh with fewer triangles, within `relative_error` x its size of the original surface.

    Only the index buffer changes: the new faces index the original vertices, so uv, normals and
    colours stay valid and the cuboid (computed from all vertices) is exactly the full mesh's.
    Borders are locked, which keeps UV seams (split vertices) from opening. Rasterizing triangles
    is most of a frame's cost on llvmpipe, and scanned meshes hold far more than a 512 px image shows.
    """
    if relative_error <= 0:
        return mesh
    import ctypes

    import meshoptimizer

    attributes = [(mesh.normals, NORMAL_WEIGHT)]
    if mesh.uv is not None:
        attributes.append((mesh.uv, UV_WEIGHT))
    if mesh.vertex_colors is not None:
        attributes.append((mesh.vertex_colors / 255.0, COLOR_WEIGHT))
    values = np.ascontiguousarray(np.hstack([a for a, _ in attributes]), dtype=np.float32)
    weights = np.concatenate([np.full(a.shape[1], w) for a, w in attributes]).astype(np.float32)
    indices = np.ascontiguousarray(mesh.faces, dtype=np.uint32).ravel()
    simplified = np.empty_like(indices)
    # meshoptimizer 0.2.30a0 declares no C signature for this function: every scalar goes in as the
    # ctypes value of its C type (size_t counts and strides, float error, unsigned options).
    count = meshoptimizer.simplify_with_attributes(
        simplified, indices, np.ascontiguousarray(mesh.vertices, dtype=np.float32), values, weights,
        index_count=ctypes.c_size_t(len(indices)),
        vertex_count=ctypes.c_size_t(len(mesh.vertices)),
        vertex_positions_stride=ctypes.c_size_t(3 * 4),
        vertex_attributes_stride=ctypes.c_size_t(values.shape[1] * 4),
        attribute_count=ctypes.c_size_t(len(weights)),
        target_index_count=ctypes.c_size_t(3),
        target_error=ctypes.c_float(relative_error),
        options=ctypes.c_uint(meshoptimizer.SIMPLIFY_LOCK_BORDER),
    )
    if count == 0:  # nothing left within the error bound (never for a closed surface): keep it all
        return mesh
    log.debug("mesh %s: %d -> %d triangles", mesh.key, len(mesh.faces), count // 3)
    return replace(mesh, faces=simplified[:count].reshape(-1, 3))


def list_files(folder: Path, suffixes: tuple[str, ...], what: str, option: str) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DopeError(f"{option}: folder {folder} does not exist")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes and p.is_file())
    if not files:
        raise DopeError(f"{option}: folder {folder} holds no {what} ({', '.join(suffixes)})")
    return files


def load_hdri(path: Path) -> np.ndarray:
    """Equirectangular map as (H, W, 3) float32 linear RGB."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.ndim != 3 or image.shape[2] < 3:
        raise DopeError(f"HDR map {path} cannot be read as a colour image")
    image = cv2.cvtColor(image[:, :, :3].astype(np.float32), cv2.COLOR_BGR2RGB)
    if not np.isfinite(image).all():
        raise DopeError(f"HDR map {path} holds non-finite values")
    return np.maximum(image, 0.0)


def load_photo(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is not None and path.suffix.lower() in (".jpg", ".jpeg") and not path.read_bytes().rstrip(b"\0").endswith(JPEG_END):
        # imread decodes a cut file without an error, filling the rest grey; libjpeg's warning names no file.
        log.warning("background image %s does not end with a JPEG end marker: truncated? Its missing part is grey; "
                    "replace the file", path)
    if image is None:
        raise DopeError(f"background image {path} cannot be read")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def distractor_scales(folder: Path) -> dict[str, float]:
    """Per-file unit scales from an `info.json` beside distractor OBJs (pybullet random_urdfs style)."""
    scales: dict[str, float] = {}
    for info_path in Path(folder).rglob("info.json"):
        try:
            info = json.loads(info_path.read_text())
        except json.JSONDecodeError as err:
            raise DopeError(f"{info_path} is not valid JSON: {err}") from None
        for stem, entry in (info.get("objects") or {}).items():
            if isinstance(entry, dict) and "urdf_scale" in entry:
                scales[str(info_path.parent / entry.get("obj", stem + ".obj"))] = float(entry["urdf_scale"][0])
    return scales


# --- the whole library for one generate config ----------------------------------------------------

# Procedural distractors: a handful of fixed shapes and sizes (metres); the sampler jitters the scale.
# Fixed sizes keep the library identical in every worker, so a mesh key means the same mesh everywhere.
PROCEDURAL_SHAPES: dict[str, tuple[str, tuple[float, ...]]] = {
    "box_small": ("box", (0.05, 0.04, 0.03)),
    "box_flat": ("box", (0.14, 0.10, 0.02)),
    "box_tall": ("box", (0.06, 0.06, 0.16)),
    "cylinder_can": ("cylinder", (0.035, 0.10)),
    "cylinder_rod": ("cylinder", (0.012, 0.18)),
    "sphere_small": ("sphere", (0.03,)),
    "sphere_large": ("sphere", (0.06,)),
    "torus_ring": ("torus", (0.05, 0.015)),
    "capsule": ("capsule", (0.025, 0.08)),
    "cone": ("cone", (0.04, 0.09)),
}
PROCEDURAL_PREFIX = "procedural/"
DISTRACTOR_MESH_ERROR = 0.01  # least relative simplification error of distractor meshes (see simplify_mesh)


def procedural_mesh(name: str) -> MeshAsset:
    """One of PROCEDURAL_SHAPES as a MeshAsset with spherical UVs (so photo textures can wrap it)."""
    import trimesh

    kind, size = PROCEDURAL_SHAPES[name]
    if kind == "box":
        mesh = trimesh.creation.box(extents=size)
        mesh.unmerge_vertices()  # one vertex per face corner: flat faces, sharp edges
    elif kind == "cylinder":
        mesh = trimesh.creation.cylinder(radius=size[0], height=size[1], sections=32)
    elif kind == "sphere":
        mesh = trimesh.creation.icosphere(subdivisions=3, radius=size[0])
    elif kind == "torus":
        mesh = trimesh.creation.torus(major_radius=size[0], minor_radius=size[1], major_sections=32, minor_sections=16)
    elif kind == "capsule":
        mesh = trimesh.creation.capsule(radius=size[0], height=size[1], count=[16, 16])
    else:
        mesh = trimesh.creation.cone(radius=size[0], height=size[1], sections=32)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    uv = spherical_uv(vertices, pole_axis=2)
    return MeshAsset(
        key=PROCEDURAL_PREFIX + name,
        vertices=vertices.astype(np.float32),
        normals=np.asarray(mesh.vertex_normals, dtype=np.float32),
        faces=np.asarray(mesh.faces, dtype=np.uint32),
        uv=uv.astype(np.float32),
        source=f"trimesh.creation.{kind}{size}",
    )


SURFACE_KEY = "surface/table"
SURFACE_SIZE = 4.0  # m: side of the square table top of `scene: tabletop`
SURFACE_TILE = 0.8  # m: one repeat of the surface's photo texture


def surface_mesh() -> MeshAsset:
    """The table top of `scene: tabletop`: a square at z = 0 facing +z, its UVs repeating every SURFACE_TILE."""
    half = SURFACE_SIZE / 2.0
    vertices = np.array([[-half, -half, 0.0], [half, -half, 0.0], [half, half, 0.0], [-half, half, 0.0]], dtype=np.float32)
    return MeshAsset(
        key=SURFACE_KEY,
        vertices=vertices,
        normals=np.tile(np.array([[0.0, 0.0, 1.0]], dtype=np.float32), (4, 1)),
        faces=np.array([[0, 1, 2], [0, 2, 3]], dtype=np.uint32),
        uv=(vertices[:, :2] / SURFACE_TILE).astype(np.float32),
        source="assets.surface_mesh",
    )


def target_class_names(config: "GenerateConfig") -> list[str]:
    """Class name of each `obj` mesh (given or from its file name); duplicates are an error."""
    names = list(config.class_names) if config.class_names else [class_name_for(Path(p)) for p in config.obj]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DopeError(
            f"obj: several meshes get the class name '{duplicates[0]}'; give distinct names with --class_names"
        )
    return names


def load_targets(config: "GenerateConfig") -> dict[str, MeshAsset]:
    """Class name -> target mesh (scaled by `config.scale`, never re-centred)."""
    names = target_class_names(config)
    return {name: load_mesh(Path(path), f"target/{name}", config.scale) for name, path in zip(names, config.obj)}


def target_cuboids(config: "GenerateConfig") -> dict[str, Cuboid]:
    """Each target class's cuboid (AABB in its model frame), without loading the rest of the library."""
    return {name: mesh.cuboid for name, mesh in load_targets(config).items()}


def build_asset_library(config: "GenerateConfig") -> AssetLibrary:
    """Load every asset a generate run needs, once per worker (about a second for the defaults)."""
    library = AssetLibrary()
    # Distractors only need a plausible silhouette: they take a coarser bound than targets.
    distractor_error = max(config.mesh_error, DISTRACTOR_MESH_ERROR) if config.mesh_error > 0 else 0.0
    for name, mesh in load_targets(config).items():
        library.meshes[mesh.key] = simplify_mesh(mesh, config.mesh_error)
        library.targets[name] = mesh.key
    for name in PROCEDURAL_SHAPES:
        mesh = procedural_mesh(name)
        library.meshes[mesh.key] = simplify_mesh(mesh, distractor_error)
    if config.scene == "tabletop":
        library.meshes[SURFACE_KEY] = surface_mesh()
    if config.distractors is not None:
        folder = Path(config.distractors)
        scales = distractor_scales(folder)
        for path in list_files(folder, MESH_SUFFIXES, "distractor meshes", "distractors"):
            key = f"distractor/{path.relative_to(folder).as_posix()}"
            library.meshes[key] = simplify_mesh(load_mesh(path, key, scales.get(str(path), 1.0)), distractor_error)
            library.distractors.append(key)
    for path in list_files(Path(config.hdri), HDR_SUFFIXES, "HDR maps", "hdri"):
        library.hdris[path.relative_to(config.hdri).as_posix()] = load_hdri(path)
    if config.backgrounds is not None:
        folder = Path(config.backgrounds)
        for path in list_files(folder, PHOTO_SUFFIXES, "images", "backgrounds"):
            library.backgrounds[path.relative_to(folder).as_posix()] = load_photo(path)
    log.debug("assets: %d meshes, %d HDR maps, %d photos", len(library.meshes), len(library.hdris), len(library.backgrounds))
    return library
