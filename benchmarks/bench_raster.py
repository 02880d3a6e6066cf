"""Raster backend speed: milliseconds per 512x512 frame, 10 targets + 20 distractors, built-in assets.

Renders the scenes `dope generate` samples (default config) in this process, with the meshes as
loaded (`mesh_error` 0: the baseline) and simplified (the default `mesh_error`), with 1 and 4 MSAA
samples, and prints per frame: CPU milliseconds (time.process_time, all threads of this process:
the figure that decides throughput when every core renders), wall milliseconds, triangles drawn,
and the ratios to the baseline measured in the same run and to the reference's 5.2 s per image.

Run it with LP_NUM_THREADS=0 so that llvmpipe renders in the calling thread (as `dope generate`
workers do when they fill the cores); on a shared machine the CPU figures are the ones to compare.

    LP_NUM_THREADS=0 python benchmarks/bench_raster.py [--frames 20] [--size 512]
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import replace
from pathlib import Path

from dope_stream.assets import build_asset_library
from dope_stream.config import GenerateConfig
from dope_stream.render import create_renderer
from dope_stream.scene import SceneSpec, sample_scene

REFERENCE_SECONDS_PER_IMAGE = 5.2
SAMPLES_PER_PIXEL = (1, 4)


def time_frames(renderer, scenes: list[SceneSpec]) -> tuple[float, float]:
    """(CPU ms, wall ms) per frame, after one warm-up frame (framebuffers, photo uploads)."""
    renderer.render(scenes[0])
    cpu, wall = time.process_time(), time.perf_counter()
    for scene in scenes:
        renderer.render(scene)
    return (time.process_time() - cpu) / len(scenes) * 1000, (time.perf_counter() - wall) / len(scenes) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    default_error = GenerateConfig.model_fields["mesh_error"].default
    print(f"{args.size}x{args.size}, 10 targets + 20 distractors, {args.frames} frames, "
          f"LP_NUM_THREADS={os.environ.get('LP_NUM_THREADS', 'unset')}")
    print(f"{'meshes':<22} {'spp':>3} {'triangles':>10} {'CPU ms':>8} {'wall ms':>8} {'CPU vs baseline':>16} {'x reference':>12}")
    baseline: dict[int, float] = {}
    for mesh_error in (0.0, default_error):
        config = GenerateConfig(out=Path("unused"), width=args.size, height=args.size, nb_objects=10,
                                nb_distractors=20, mesh_error=mesh_error)
        assets = build_asset_library(config)
        renderer = create_renderer("raster", assets)
        scenes = [sample_scene(config, assets, index) for index in range(args.frames)]
        triangles = sum(len(assets.meshes[i.mesh_key].faces) for s in scenes for i in s.instances) / len(scenes)
        label = "as loaded (baseline)" if mesh_error == 0 else f"mesh_error {mesh_error}"
        for spp in SAMPLES_PER_PIXEL:
            cpu, wall = time_frames(renderer, [replace(scene, spp=spp) for scene in scenes])
            baseline.setdefault(spp, cpu)
            print(f"{label:<22} {spp:>3} {triangles:>10,.0f} {cpu:>8.1f} {wall:>8.1f} "
                  f"{baseline[spp] / cpu:>15.2f}x {REFERENCE_SECONDS_PER_IMAGE * 1000 / cpu:>11.0f}x")
        renderer.close()


if __name__ == "__main__":
    main()
