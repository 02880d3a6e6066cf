"""Scene specification: the plain data a renderer turns into pixels.

A `SceneSpec` is sampled from (seed, frame index) alone (`sample_scene`) and holds no renderer
objects, so the same spec renders identically in any worker or backend and can be shipped to a Ray
actor. Poses use the conventions of `dope_stream.geometry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .geometry import Intrinsics, Pose


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

    @property
    def targets(self) -> tuple[Instance, ...]:
        return tuple(i for i in self.instances if i.is_target)
