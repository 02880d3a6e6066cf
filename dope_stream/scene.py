"""Scene specification: the plain data a renderer turns into pixels.

A `SceneSpec` is sampled from (seed, frame index) alone (`sample_scene`) and holds no renderer
objects, so the same spec renders identically in any worker or backend and can be shipped to a Ray
actor. Poses use the conventions of `dope_stream.geometry`.
"""

from __future__ import annotations

import colorsys
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import numpy as np
from scipy.spatial.transform import Rotation

from .assets import SURFACE_KEY
from .geometry import Intrinsics, Pose, random_rotation, rotation_near
from .render import BACKENDS, DEFAULT_RENDERER, backend
from .tabletop import (
    CLUTTER_RADIUS, ENVIRONMENT_FROM_TABLE, LOOK_AT_JITTER, MAX_SETTLE_STEPS, RESTING_FACES, Body, camera_on_cap,
    preset_intrinsics, settle,
)

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .assets import AssetLibrary, MeshAsset
    from .config import GenerateConfig


@dataclass(frozen=True)
class Material:
    """Surface appearance of one instance.

    `color` multiplies the mesh's texture or vertex colours (1,1,1 keeps them); a mesh with neither
    is painted `color`. `texture_key` optionally replaces the mesh's texture with a background
    photo (procedural textures for distractors).
    """

    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    roughness: float = 0.5
    metallic: float = 0.0
    specular: float = 0.5
    texture_key: str | None = None


@dataclass(frozen=True)
class Instance:
    """One mesh placed in the camera frame."""

    mesh_key: str  # key into the AssetLibrary's meshes
    pose: Pose  # model -> camera, metres
    material: Material
    segmentation_id: int  # > 0, unique in the scene; written to the instance mask
    class_name: str | None = None  # the target class; None for distractors
    name: str = ""  # e.g. "003_cracker_box_0"
    scale: float = 1.0  # extra uniform scale applied to the mesh (distractor size jitter)

    @property
    def is_target(self) -> bool:
        return self.class_name is not None


@dataclass(frozen=True)
class Lighting:
    hdri_key: str  # key into the AssetLibrary's environment maps
    yaw_deg: float  # rotation of the environment about the world up axis
    intensity: float  # multiplier of the map's radiance
    world_from_camera: np.ndarray = field(default_factory=lambda: np.eye(3))  # camera tilt in the environment


@dataclass(frozen=True)
class Background:
    mode: Literal["hdri", "photo"]
    photo_key: str | None = None  # key into the AssetLibrary's backgrounds (mode == "photo")


@dataclass(frozen=True)
class SceneSpec:
    index: int
    intrinsics: Intrinsics
    instances: tuple[Instance, ...]
    lighting: Lighting
    background: Background
    spp: int = BACKENDS[DEFAULT_RENDERER].default_spp  # sample_scene gives each frame its backend's
    renderer: str = DEFAULT_RENDERER  # backend chosen for this frame (renderer=mix picks per frame)
    denoise: bool = True  # pathtrace: run Open Image Denoise on the image (config `denoise`)

    @property
    def targets(self) -> tuple[Instance, ...]:
        return tuple(i for i in self.instances if i.is_target)


# --- sampling -------------------------------------------------------------------------------------
# Every random draw of frame i comes from one generator seeded by (seed, i), drawn in a fixed order
# that does not depend on the renderer, so `renderer: raster`, `pathtrace` and `mix` show the same
# scenes and frame i can be rendered by any worker at any time.

DISTRACTOR_SCALE_JITTER = (0.7, 1.3)  # uniform scale factor range for distractors
PROCEDURAL_PHOTO_TEXTURE = 0.4  # probability that a procedural distractor wears a background photo
HDRI_INTENSITY = (0.5, 2.0)  # log-uniform multiplier of the environment's radiance
CAMERA_PITCH_DOWN_DEG = (0.0, 60.0)  # how far the camera looks down from the horizon
CAMERA_ROLL_DEG = (-15.0, 15.0)
# Reference orientation of targets for `max_rotation` < 180: a z-up model (the YCB convention)
# standing upright in the image (model +z to image up, camera -y) with its +x face toward the camera
# (camera -z), so model +y points to image right. Columns: the model axes in camera coordinates.
UPRIGHT_FACING_CAMERA = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])
SURFACE_PHOTO_TEXTURE = 0.6  # probability that the tabletop wears a photo texture, not a plain colour
DISTRACTOR_VIEW_MARGIN = 0.15  # distractor centres may lie this share of the image size outside it

# Camera frame (x right, y down, z forward) -> environment world frame (y up) for a camera looking at
# the horizon along world -z: x -> x, y -> -y, z -> -z.
_WORLD_FROM_LEVEL_CAMERA = np.diag([1.0, -1.0, -1.0])


def camera_intrinsics(config: "GenerateConfig") -> Intrinsics:
    """The camera of every frame: `intrinsics` (fx,fy,cx,cy) when given, else from `fov`."""
    if config.intrinsics is not None:
        fx, fy, cx, cy = config.intrinsics
        return Intrinsics(fx, fy, cx, cy, config.width, config.height)
    return Intrinsics.from_fov(config.width, config.height, config.fov)


def frame_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of frame `index`: depends on (seed, index) only."""
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def camera_tilt(pitch_down_deg: float, roll_deg: float) -> np.ndarray:
    """world_from_camera for a camera pitched down by `pitch_down_deg` and rolled about its axis."""
    tilt = Rotation.from_euler("zx", [roll_deg, -pitch_down_deg], degrees=True).as_matrix()
    return _WORLD_FROM_LEVEL_CAMERA @ tilt


def renderer_names(config: "GenerateConfig") -> list[str]:
    """The backends frames of `config` can use (`mix` uses both unless its fraction is 0 or 1)."""
    return backend(config.renderer).members(config.render_options())


def sample_scene(config: "GenerateConfig", assets: "AssetLibrary", index: int) -> SceneSpec:
    """Frame `index` of the dataset described by `config` (targets get segmentation ids 1..n)."""
    rng = frame_rng(config.seed, index)
    renderer_draw = rng.random()  # drawn even without `mix` so every renderer sees the same scene
    renderer = backend(config.renderer).frame_renderer(config.render_options(), renderer_draw)
    if config.cameras:
        intrinsics = preset_intrinsics(config.cameras[int(rng.integers(len(config.cameras)))], config.width, config.height)
    else:
        intrinsics = camera_intrinsics(config)
    if config.scene == "tabletop":
        instances, world_from_camera = _view_tabletop(rng, config, assets, index // config.views_per_scene)
    else:
        nb_targets, nb_distractors = _counts(rng, config)
        place = _flying_placer(config, intrinsics)
        instances = _sample_targets(rng, assets, nb_targets, place)
        instances += _sample_distractors(rng, config, assets, nb_distractors, nb_targets + 1, place)
        world_from_camera = None
    hdri_key, yaw_deg = str(rng.choice(list(assets.hdris))), float(rng.uniform(0.0, 360.0))
    intensity = float(np.exp(rng.uniform(*np.log(HDRI_INTENSITY))))
    if world_from_camera is None:  # flying: a tilted camera, drawn after the environment as always
        world_from_camera = camera_tilt(rng.uniform(*CAMERA_PITCH_DOWN_DEG), rng.uniform(*CAMERA_ROLL_DEG))
    lighting = Lighting(hdri_key, yaw_deg, intensity, world_from_camera)
    photo_draw, photo_choice = rng.random(), rng.random()
    background = Background("hdri")
    if assets.backgrounds and photo_draw < config.photo_background:
        keys = list(assets.backgrounds)
        background = Background("photo", keys[int(photo_choice * len(keys))])
    return SceneSpec(index, intrinsics, tuple(instances), lighting, background, config.spp_for(renderer), renderer, config.denoise)


# Places one instance: (rng, the mesh's cuboid centre in its model frame, target or distractor) -> pose.
Placer = Callable[[np.random.Generator, np.ndarray, bool], Pose]


def _flying_placer(config: "GenerateConfig", intrinsics: Intrinsics) -> Placer:
    """Free-floating poses: targets near `max_rotation` of upright with their cuboid centre in view
    (at least partly visible), distractors at any rotation with centres up to a margin outside."""

    def place(rng: np.random.Generator, center_model: np.ndarray, is_target: bool) -> Pose:
        if is_target:
            rotation = rotation_near(rng, UPRIGHT_FACING_CAMERA, config.max_rotation)
            return _place(rng, intrinsics, config.depth_range, center_model, 0.0, rotation)
        rotation = random_rotation(rng)
        return _place(rng, intrinsics, config.depth_range, center_model, DISTRACTOR_VIEW_MARGIN, rotation)

    return place


def _sample_targets(rng: np.random.Generator, assets: "AssetLibrary", count: int, place: Placer) -> list[Instance]:
    classes = list(assets.targets)
    per_class: dict[str, int] = {}
    instances = []
    for k in range(count):
        class_name = classes[int(rng.integers(len(classes)))]
        mesh_key = assets.targets[class_name]
        pose = place(rng, np.asarray(assets.meshes[mesh_key].cuboid.center), True)
        material = Material(
            color=tuple(float(c) for c in rng.uniform(0.8, 1.0, 3)),  # mild tint of the texture
            roughness=float(rng.uniform(0.35, 0.8)),
            metallic=0.0,
            specular=float(rng.uniform(0.3, 0.6)),
        )
        number = per_class.get(class_name, 0)
        per_class[class_name] = number + 1
        instances.append(Instance(mesh_key, pose, material, k + 1, class_name, f"{class_name}_{number}"))
    return instances


def _sample_distractors(
    rng: np.random.Generator, config: "GenerateConfig", assets: "AssetLibrary", count: int, first_id: int, place: Placer
) -> list[Instance]:
    procedural, loaded, photos = assets.procedural, assets.distractors, list(assets.backgrounds)
    instances = []
    for k in range(count):
        use_procedural = not loaded or rng.random() < config.procedural_distractors
        pool = procedural if use_procedural else loaded
        mesh = assets.meshes[pool[int(rng.integers(len(pool)))]]
        scale = float(rng.uniform(*DISTRACTOR_SCALE_JITTER))
        pose = place(rng, np.asarray(mesh.cuboid.center) * scale, False)
        material = _distractor_material(rng, mesh, photos if use_procedural else [])
        instances.append(Instance(mesh.key, pose, material, first_id + k, None, f"distractor_{k}", scale))
    return instances


def _resting_placer(config: "GenerateConfig") -> Placer:
    """Tabletop: only the rotation the object is dropped with (model -> table; no translation yet):
    targets upright or, with probability `other_faces`, on another box face; distractors on any box
    face (a face starts close to a stable pose: physics settles in fewer steps than from any rotation)."""

    def place(rng: np.random.Generator, center_model: np.ndarray, is_target: bool) -> Pose:
        face_draw, face = rng.random(), int(rng.integers(1, len(RESTING_FACES)))
        if not is_target:
            return Pose(RESTING_FACES[int(face_draw * len(RESTING_FACES))], np.zeros(3))
        return Pose(RESTING_FACES[face if face_draw < config.other_faces else 0], np.zeros(3))

    return place


def _counts(rng: np.random.Generator, config: "GenerateConfig") -> tuple[int, int]:
    """Target and distractor instances of one scene, from the `nb_objects` and `nb_distractors` ranges."""
    nb_targets = int(rng.integers(config.nb_objects[0], config.nb_objects[1] + 1))
    return nb_targets, int(rng.integers(config.nb_distractors[0], config.nb_distractors[1] + 1))


@dataclass(frozen=True)
class TableLayout:
    """Instances settled on the table (poses model -> table), shared by `views_per_scene` frames."""

    instances: tuple[Instance, ...]
    nb_targets: int


_LAYOUTS: dict[tuple, TableLayout] = {}  # the last few layouts of this process (consecutive views share one)
_LAYOUTS_KEPT = 4


def tabletop_layout(config: "GenerateConfig", assets: "AssetLibrary", layout_index: int) -> TableLayout:
    """Layout `layout_index`: depends only on (seed, layout_index) (and the config and assets)."""
    key = (id(assets), config.model_dump_json(), layout_index)
    if key not in _LAYOUTS:
        if len(_LAYOUTS) >= _LAYOUTS_KEPT:
            del _LAYOUTS[next(iter(_LAYOUTS))]
        _LAYOUTS[key] = _settle_layout(config, assets, layout_index)
    return _LAYOUTS[key]


def _settle_layout(config: "GenerateConfig", assets: "AssetLibrary", layout_index: int) -> TableLayout:
    # Its own stream, apart from every frame's: SeedSequence([seed, layout, 1]) vs ([seed, frame]).
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, layout_index, 1]))
    nb_targets, nb_distractors = _counts(rng, config)
    place = _resting_placer(config)
    dropped = _sample_targets(rng, assets, nb_targets, place)
    dropped += _sample_distractors(rng, config, assets, nb_distractors, nb_targets + 1, place)
    radius = rng.uniform(*CLUTTER_RADIUS)
    distance, angle = radius * np.sqrt(rng.random(len(dropped))), rng.uniform(0.0, 2.0 * np.pi, len(dropped))
    positions = np.stack([distance * np.cos(angle), distance * np.sin(angle)], axis=1)
    yaws = rng.uniform(0.0, 2.0 * np.pi, len(dropped))
    bodies = [Body(assets.meshes[i.mesh_key].hull * i.scale, i.pose.rotation) for i in dropped]
    poses, rested = settle(bodies, positions, yaws)
    if not rested:
        log.warning("tabletop: physics did not settle within %d steps; layout %d keeps the last poses", MAX_SETTLE_STEPS, layout_index)
    settled = [replace(i, pose=pose) for i, pose in zip(dropped, poses)]
    surface = _surface_material(rng, list(assets.backgrounds))
    settled.append(Instance(SURFACE_KEY, Pose(np.eye(3), np.zeros(3)), surface, len(settled) + 1, None, "table"))
    return TableLayout(tuple(settled), nb_targets)


def _view_tabletop(
    rng: np.random.Generator, config: "GenerateConfig", assets: "AssetLibrary", layout_index: int
) -> tuple[list[Instance], np.ndarray]:
    """A view of layout `layout_index` from a camera on the sphere cap above one of its targets.
    Returns the instances in the camera frame and the environment's world_from_camera."""
    layout = tabletop_layout(config, assets, layout_index)
    look_at = rng.normal(0.0, LOOK_AT_JITTER, 3)
    if layout.nb_targets:
        target = layout.instances[int(rng.integers(layout.nb_targets))]
        look_at += target.pose.apply(np.asarray([assets.meshes[target.mesh_key].cuboid.center]))[0]
    table_from_camera, position = camera_on_cap(rng, look_at, config.elevation, config.camera_distance, config.camera_roll)
    camera_from_table = Pose(table_from_camera.T, -table_from_camera.T @ position)
    instances = [replace(i, pose=_compose(camera_from_table, i.pose)) for i in layout.instances]
    return instances, ENVIRONMENT_FROM_TABLE @ table_from_camera


def _compose(outer: Pose, inner: Pose) -> Pose:
    return Pose(outer.rotation @ inner.rotation, outer.rotation @ inner.translation + outer.translation)


def _surface_material(rng: np.random.Generator, photos: list[str]) -> Material:
    """The table: a photo texture (wood, tiles, fabric...) or a plain colour, matte to glossy."""
    photo_draw, photo_choice = rng.random(), rng.random()
    hue, saturation, value = rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.3, 1.0)
    roughness, specular = float(rng.uniform(0.3, 0.95)), float(rng.uniform(0.2, 0.6))
    if photos and photo_draw < SURFACE_PHOTO_TEXTURE:
        return Material((1.0, 1.0, 1.0), roughness, 0.0, specular, photos[int(photo_choice * len(photos))])
    return Material(tuple(float(c) for c in colorsys.hsv_to_rgb(hue, saturation, value)), roughness, 0.0, specular)


def _distractor_material(rng: np.random.Generator, mesh: "MeshAsset", photos: list[str]) -> Material:
    """Textured meshes keep their texture (lightly tinted); plain ones get a random colour or photo."""
    hue, saturation, value = rng.random(), rng.uniform(0.2, 1.0), rng.uniform(0.25, 1.0)
    roughness, metal_draw, specular = float(rng.uniform(0.1, 0.9)), rng.random(), float(rng.uniform(0.2, 0.8))
    photo_draw, photo_choice = rng.random(), rng.random()
    metallic = float(metal_draw) if metal_draw > 0.8 else 0.0  # one in five is (partly) metallic
    if mesh.texture is not None or mesh.vertex_colors is not None:
        color = tuple(float(c) for c in (0.75 + 0.25 * np.asarray(colorsys.hsv_to_rgb(hue, saturation, 1.0))))
        return Material(color, roughness, metallic, specular)
    if photos and photo_draw < PROCEDURAL_PHOTO_TEXTURE:
        return Material((1.0, 1.0, 1.0), roughness, metallic, specular, photos[int(photo_choice * len(photos))])
    color = tuple(float(c) for c in colorsys.hsv_to_rgb(hue, saturation, value))
    return Material(color, roughness, metallic, specular)


def _place(
    rng: np.random.Generator,
    intrinsics: Intrinsics,
    depth_range: tuple[float, float],
    center_model: tuple[float, float, float] | np.ndarray,
    margin: float,
    rotation: np.ndarray,
) -> Pose:
    """A `rotation`-ed pose whose `center_model` point projects to a uniform pixel of the image (grown
    by `margin` of its size) at a uniform distance in `depth_range` from the camera."""
    u = rng.uniform(-margin, 1.0 + margin) * intrinsics.width - 0.5
    v = rng.uniform(-margin, 1.0 + margin) * intrinsics.height - 0.5
    distance = rng.uniform(*depth_range)
    ray = np.array([(u - intrinsics.cx) / intrinsics.fx, (v - intrinsics.cy) / intrinsics.fy, 1.0])
    center_camera = distance * ray / np.linalg.norm(ray)
    return Pose(rotation, center_camera - rotation @ np.asarray(center_model, dtype=np.float64))
