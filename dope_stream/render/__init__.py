"""Renderer backends behind one protocol, chosen by name.

A backend is created once per worker (it owns a GL context or a Mitsuba scene and uploads every
asset once) and then renders many `SceneSpec`s. Heavy imports (moderngl, mitsuba) stay inside the
backend modules so that choosing one never imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np

from ..errors import DopeError

if TYPE_CHECKING:
    from ..assets import AssetLibrary
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


RendererFactory = Callable[["AssetLibrary"], Renderer]
_REGISTRY: dict[str, Callable[[], RendererFactory]] = {}


def register(name: str):
    """Register a function returning the backend's factory (so its imports happen lazily)."""

    def wrap(loader: Callable[[], RendererFactory]):
        _REGISTRY[name] = loader
        return loader

    return wrap


@register("raster")
def _raster() -> RendererFactory:
    from .raster import RasterRenderer

    return RasterRenderer


@register("pathtrace")
def _pathtrace() -> RendererFactory:
    from .pathtrace import PathTraceRenderer

    return PathTraceRenderer


@register("nvisii")
def _nvisii() -> RendererFactory:
    raise DopeError(
        "renderer 'nvisii' is not available: NVISII's last wheels (1.1.72, 2021) exist only for "
        "Python <= 3.9 and cannot be installed here. Use --renderer raster (fast OpenGL) or "
        "--renderer pathtrace (Mitsuba 3 path tracer, the photoreal replacement)."
    )


def create_renderer(name: str, assets: "AssetLibrary") -> Renderer:
    if name not in _REGISTRY:
        raise DopeError(f"unknown renderer '{name}' (choose one of: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[name]()(assets)
