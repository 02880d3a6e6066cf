"""What every renderer backend shares: the protocol, the layers it returns and the typed options its
factory takes (the registry is in `dope_stream.render`, the conventions in `render.conventions`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from ..scene import SceneSpec


@dataclass
class RenderLayers:
    """What one render pass yields; every array is pixel-aligned, height x width.

    rgb: (H, W, 3) uint8, sRGB, background included.
    instance_id: (H, W) uint16, the visible instance's `segmentation_id`, 0 where no object.
    depth: (H, W) float32, camera-frame z in metres, 0 where no object.
    full_pixel_counts: segmentation_id -> pixels the target would cover if nothing occluded it
        (inside the image), for every target instance; gives visibility = visible / full.
    """

    rgb: np.ndarray
    instance_id: np.ndarray
    depth: np.ndarray
    full_pixel_counts: dict[int, int]


class Renderer(Protocol):
    def render(self, scene: "SceneSpec") -> RenderLayers: ...

    def close(self) -> None: ...


class BackendOptions(BaseModel):
    """Base of the typed options of the backends (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PathTraceOptions(BackendOptions):
    """`pathtrace` backend settings (the CLI and the container also read them from environment variables)."""

    variant: str | None = Field(
        None, description="Mitsuba variant (e.g. scalar_rgb); none: cuda_ad_rgb on a CUDA GPU, else llvm_ad_rgb "
        "(environment: DOPE_MITSUBA_VARIANT)",
    )
    threads: int | None = Field(
        None, ge=1, description="Dr.Jit and OIDN threads; none: every core, or cores / render_workers in worker processes "
        "(environment: DOPE_PATHTRACE_THREADS)",
    )


class RenderOptions(BackendOptions):
    """Everything a backend factory may need besides the assets."""

    pathtrace: PathTraceOptions = Field(default_factory=PathTraceOptions)
    mix_fraction: float = Field(0.5, ge=0, le=1, description="mix: share of path-traced frames")
