"""`mix` backend: each frame drawn by `raster` or `pathtrace` (its `SceneSpec.renderer`), both on
ONE raster renderer: the path tracer takes its annotations from the very context that draws the
raster frames, so a worker holds one EGL context and one upload of every asset."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .protocol import RenderLayers, RenderOptions

if TYPE_CHECKING:
    from ..assets import AssetLibrary
    from ..scene import SceneSpec


class MixRenderer:
    def __init__(self, assets: "AssetLibrary", options: RenderOptions, members: list[str]):
        """members: the backends frames will use (mix_fraction 0: no Mitsuba at all)."""
        from .raster import RasterRenderer

        self.raster = RasterRenderer(assets)
        self.members: dict = {"raster": self.raster}
        try:
            if "pathtrace" in members:
                from .pathtrace import PathTraceRenderer

                pathtrace = options.pathtrace
                self.members["pathtrace"] = PathTraceRenderer(assets, pathtrace.variant, threads=pathtrace.threads, raster=self.raster)
        except BaseException:
            self.raster.close()
            raise

    def render(self, scene: "SceneSpec") -> RenderLayers:
        return self.members[scene.renderer].render(scene)

    def close(self) -> None:
        for renderer in self.members.values():
            renderer.close()
        self.members.clear()
