"""Renderer backends behind one protocol, listed in one registry.

A backend is created once per worker (it owns a GL context or a Mitsuba scene and uploads every
asset once) and then renders many `SceneSpec`s. Heavy imports (moderngl, mitsuba) stay inside the
backend modules so that choosing one never imports the other.

The registry (`BACKENDS`) is the only list of renderer names: the config's `renderer` choices,
each backend's default samples per pixel and the backends a frame may be drawn by all come from it.
A backend's factory takes the asset library and the typed `RenderOptions`. A composite (`mix`)
draws each frame with one of its members, all sharing one raster context (one EGL context, one
upload of every asset). The conventions every backend follows are in `render.conventions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..errors import DopeError
from .protocol import BackendOptions, PathTraceOptions, Renderer, RenderLayers, RenderOptions

if TYPE_CHECKING:
    from ..assets import AssetLibrary

__all__ = [
    "BACKENDS", "DEFAULT_RENDERER", "Backend", "BackendOptions", "PathTraceOptions", "RenderLayers", "RenderOptions",
    "Renderer", "backend", "create_renderer", "register", "renderer_names",
]


RendererFactory = Callable[["AssetLibrary", RenderOptions], Renderer]


@dataclass(frozen=True)
class Backend:
    """One registered renderer name.

    load: returns the factory (so the backend's imports happen only when it is used).
    default_spp: samples per pixel when the config gives none (None for a composite: each frame
        takes its member's).
    shares: a composite's members -> the share of frames each draws, in the order a frame's
        uniform draw is compared against (empty for a plain backend).
    """

    name: str
    load: Callable[[], RendererFactory]
    default_spp: int | None = None
    shares: Callable[[RenderOptions], dict[str, float]] | None = None

    def members(self, options: RenderOptions) -> list[str]:
        """The plain backends frames of this one are drawn by (itself unless a composite)."""
        if self.shares is None:
            return [self.name]
        return [name for name, share in self.shares(options).items() if share > 0]

    def frame_renderer(self, options: RenderOptions, draw: float) -> str:
        """The backend drawing a frame whose uniform draw in [0, 1) is `draw`."""
        if self.shares is None:
            return self.name
        shares = self.shares(options)
        total = 0.0
        for name, share in shares.items():
            total += share
            if draw < total:
                return name
        return name  # rounding left the last share's end just below 1


BACKENDS: dict[str, Backend] = {}
DEFAULT_RENDERER = "raster"


def register(name: str, default_spp: int | None = None, shares=None):
    """Register a function returning the backend's factory (called only when the backend is used)."""

    def wrap(loader: Callable[[], RendererFactory]):
        BACKENDS[name] = Backend(name, loader, default_spp, shares)
        return loader

    return wrap


def renderer_names() -> tuple[str, ...]:
    """Every registered renderer name, in registration order (the config's choices)."""
    return tuple(BACKENDS)


def backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise DopeError(f"unknown renderer '{name}' (choose one of: {', '.join(BACKENDS)})")
    return BACKENDS[name]


def create_renderer(name: str, assets: "AssetLibrary", options: RenderOptions | None = None) -> Renderer:
    return backend(name).load()(assets, options or RenderOptions())


# Raster: no MSAA by default, because on llvmpipe the anti-aliasing pass costs ~15 ms of a ~35 ms
# frame and 1 sample is what reaches 40+ images/s with 2 workers (benchmarks/bench_generate.py).
@register("raster", default_spp=1)
def _raster() -> RendererFactory:
    from .raster import RasterRenderer

    return lambda assets, options: RasterRenderer(assets)


# Pathtrace: 4 path samples, which OIDN denoises cleanly.
@register("pathtrace", default_spp=4)
def _pathtrace() -> RendererFactory:
    from .pathtrace import PathTraceRenderer

    return lambda assets, options: PathTraceRenderer(assets, options.pathtrace.variant, threads=options.pathtrace.threads)


# Compared in this order against the frame's draw: pathtrace when draw < mix_fraction.
@register("mix", shares=lambda options: {"pathtrace": options.mix_fraction, "raster": 1.0 - options.mix_fraction})
def _mix() -> RendererFactory:
    from .mix import MixRenderer

    return lambda assets, options: MixRenderer(assets, options, BACKENDS["mix"].members(options))


@register("nvisii")
def _nvisii() -> RendererFactory:
    raise DopeError(
        "renderer 'nvisii' is not available: NVISII's last wheels (1.1.72, 2021) exist only for "
        "Python <= 3.9 and cannot be installed here. Use --renderer raster (fast OpenGL) or "
        "--renderer pathtrace (Mitsuba 3 path tracer, the photoreal replacement)."
    )
