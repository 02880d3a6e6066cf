"""Speed of the `pathtrace` backend against `raster` (measured in the same run) and the reference.

Prints seconds per image (512x512 by default) for path samples 4, 16, 64 with and without OIDN
denoising, in 1 and 2 worker processes, with ratios to the raster backend and to the reference's
NVISII figure (5.2 s per image on a GPU). Also writes a comparison grid (raster | pathtrace spp 4
noisy | spp 4 denoised | spp 64 denoised), e.g. for docs/images/pathtrace_grid.png.

    python benchmarks/bench_pathtrace.py [--size 512] [--frames 6] [--spp 4 16 64] [--workers 1 2]
                                         [--grid docs/images/pathtrace_grid.png]
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import time
from pathlib import Path

import cv2
import numpy as np

REFERENCE_SECONDS = 5.2  # NVISII path tracing per image on a GPU (dope-reference.md)
WARMUP_FRAMES = 2  # scene build, pool growth and kernel compilation happen here


def _config(size: int, renderer: str, spp: int, denoise: bool):
    from dope_stream.config import GenerateConfig

    return GenerateConfig(width=size, height=size, spp=spp, renderer=renderer, denoise=denoise)


def _worker_seconds(args: tuple[int, str, int, bool, list[int]]) -> float:
    """Wall seconds one worker spends on `indices` after warming up on frames it does not time."""
    from dope_stream.assets import build_asset_library
    from dope_stream.render import create_renderer
    from dope_stream.scene import sample_scene

    size, renderer_name, spp, denoise, indices = args
    config = _config(size, renderer_name, spp, denoise)
    assets = build_asset_library(config)
    renderer = create_renderer(renderer_name, assets)
    for index in range(10_000, 10_000 + WARMUP_FRAMES):
        renderer.render(sample_scene(config, assets, index))
    start = time.perf_counter()
    for index in indices:
        renderer.render(dataclasses.replace(sample_scene(config, assets, index), denoise=denoise))
    seconds = time.perf_counter() - start
    renderer.close()
    return seconds


def seconds_per_image(size: int, renderer: str, spp: int, denoise: bool, frames: int, workers: int) -> float:
    """Throughput figure: the slowest worker's time over all frames (workers run at once)."""
    shares = [list(range(w, frames, workers)) for w in range(workers)]
    jobs = [(size, renderer, spp, denoise, share) for share in shares]
    if workers == 1:
        return _worker_seconds(jobs[0]) / frames
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        # Warm-up happens inside each worker before its timer starts, so the max is render time only.
        return max(pool.map(_worker_seconds, jobs)) / frames


def comparison_grid(size: int, index: int) -> np.ndarray:
    """One frame side by side: raster | pathtrace spp 4 noisy | spp 4 denoised | spp 64 denoised."""
    from dope_stream.assets import build_asset_library
    from dope_stream.render import create_renderer
    from dope_stream.scene import sample_scene

    config = _config(size, "pathtrace", 4, True)
    assets = build_asset_library(config)
    scene = sample_scene(config, assets, index)
    raster, pathtrace = create_renderer("raster", assets), create_renderer("pathtrace", assets)
    panels = [
        ("raster", raster.render(scene).rgb),
        ("pathtrace 4 spp", pathtrace.render(dataclasses.replace(scene, denoise=False)).rgb),
        ("4 spp + OIDN", pathtrace.render(scene).rgb),
        ("64 spp + OIDN", pathtrace.render(dataclasses.replace(scene, spp=64)).rgb),
    ]
    labelled = []
    for title, rgb in panels:
        panel = np.ascontiguousarray(rgb)
        cv2.putText(panel, title, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
        labelled.append(panel)
    raster.close()
    pathtrace.close()
    return np.hstack(labelled)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=6, help="timed frames per configuration")
    parser.add_argument("--spp", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--grid", type=Path, default=None, help="write the comparison grid PNG here")
    parser.add_argument("--grid-frame", type=int, default=3)
    args = parser.parse_args()

    if args.grid is not None:
        args.grid.parent.mkdir(parents=True, exist_ok=True)
        grid = comparison_grid(args.size, args.grid_frame)
        cv2.imwrite(str(args.grid), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
        print(f"wrote {args.grid}")

    print(f"{args.size}x{args.size}, {args.frames} frames per row, after {WARMUP_FRAMES} warm-up frames per worker")
    print(f"{'renderer':<10} {'spp':>4} {'denoise':>8} {'workers':>8} {'s/image':>8} {'images/s':>9} {'x raster':>9} {'vs ref 5.2s':>12}")
    for workers in args.workers:
        raster = seconds_per_image(args.size, "raster", 4, False, args.frames, workers)
        print(f"{'raster':<10} {4:>4} {'-':>8} {workers:>8} {raster:>8.3f} {1 / raster:>9.2f} {1.0:>9.1f} {REFERENCE_SECONDS / raster:>11.1f}x")
        for spp in args.spp:
            for denoise in (False, True):
                seconds = seconds_per_image(args.size, "pathtrace", spp, denoise, args.frames, workers)
                print(
                    f"{'pathtrace':<10} {spp:>4} {str(denoise):>8} {workers:>8} {seconds:>8.3f} {1 / seconds:>9.2f} "
                    f"{seconds / raster:>9.1f} {REFERENCE_SECONDS / seconds:>11.1f}x"
                )


if __name__ == "__main__":
    main()
