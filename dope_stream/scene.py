"""Scene specification: the plain data a renderer turns into pixels.

A `SceneSpec` is sampled from (seed, frame index) alone (`sample_scene`) and holds no renderer
objects, so the same spec renders identically in any worker or backend and can be shipped to a Ray
actor. Poses use the conventions of `dope_stream.geometry`.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
from scipy.spatial.transform import Rotation

from .geometry import Intrinsics, Pose, random_rotation, rotation_near

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
    spp: int = 4
    renderer: str = "raster"  # backend chosen for this frame (renderer=mix picks per frame)
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
    if config.renderer != "mix":
        return [config.renderer]
    return [name for name, share in (("raster", 1.0 - config.mix_fraction), ("pathtrace", config.mix_fraction)) if share > 0]


def sample_scene(config: "GenerateConfig", assets: "AssetLibrary", index: int) -> SceneSpec:
    """Frame `index` of the dataset described by `config` (targets get segmentation ids 1..n)."""
    rng = frame_rng(config.seed, index)
    renderer_draw = rng.random()  # drawn even without `mix` so every renderer sees the same scene
    renderer = config.renderer
    if renderer == "mix":
        renderer = "pathtrace" if renderer_draw < config.mix_fraction else "raster"
    intrinsics = camera_intrinsics(config)
    nb_targets = int(rng.integers(config.nb_objects[0], config.nb_objects[1] + 1))
    nb_distractors = int(rng.integers(config.nb_distractors[0], config.nb_distractors[1] + 1))
    instances = _sample_targets(rng, config, assets, intrinsics, nb_targets)
    instances += _sample_distractors(rng, config, assets, intrinsics, nb_distractors, first_id=nb_targets + 1)
    lighting = Lighting(
        hdri_key=str(rng.choice(list(assets.hdris))),
        yaw_deg=float(rng.uniform(0.0, 360.0)),
        intensity=float(np.exp(rng.uniform(*np.log(HDRI_INTENSITY)))),
        world_from_camera=camera_tilt(rng.uniform(*CAMERA_PITCH_DOWN_DEG), rng.uniform(*CAMERA_ROLL_DEG)),
    )
    photo_draw, photo_choice = rng.random(), rng.random()
    background = Background("hdri")
    if assets.backgrounds and photo_draw < config.photo_background:
        keys = list(assets.backgrounds)
        background = Background("photo", keys[int(photo_choice * len(keys))])
    return SceneSpec(index, intrinsics, tuple(instances), lighting, background, config.spp_for(renderer), renderer, config.denoise)


def _sample_targets(
    rng: np.random.Generator, config: "GenerateConfig", assets: "AssetLibrary", intrinsics: Intrinsics, count: int
) -> list[Instance]:
    classes = list(assets.targets)
    per_class: dict[str, int] = {}
    instances = []
    for k in range(count):
        class_name = classes[int(rng.integers(len(classes)))]
        mesh_key = assets.targets[class_name]
        # The cuboid centre (not the model origin) projects inside the image: at least partly in view.
        rotation = rotation_near(rng, UPRIGHT_FACING_CAMERA, config.max_rotation)
        pose = _place(rng, intrinsics, config.depth_range, assets.meshes[mesh_key].cuboid.center, 0.0, rotation)
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
    rng: np.random.Generator,
    config: "GenerateConfig",
    assets: "AssetLibrary",
    intrinsics: Intrinsics,
    count: int,
    first_id: int,
) -> list[Instance]:
    procedural, loaded, photos = assets.procedural, assets.distractors, list(assets.backgrounds)
    instances = []
    for k in range(count):
        use_procedural = not loaded or rng.random() < config.procedural_distractors
        pool = procedural if use_procedural else loaded
        mesh = assets.meshes[pool[int(rng.integers(len(pool)))]]
        scale = float(rng.uniform(*DISTRACTOR_SCALE_JITTER))
        center = np.asarray(mesh.cuboid.center) * scale
        rotation = random_rotation(rng)
        pose = _place(rng, intrinsics, config.depth_range, center, DISTRACTOR_VIEW_MARGIN, rotation)
        material = _distractor_material(rng, mesh, photos if use_procedural else [])
        instances.append(Instance(mesh.key, pose, material, first_id + k, None, f"distractor_{k}", scale))
    return instances


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
