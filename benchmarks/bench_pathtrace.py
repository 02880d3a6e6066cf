"""Speed of the `pathtrace` backend against `raster` (measured in the same run) and the reference.

Prints seconds per image (512x512 by default) for path samples 4, 16, 64 with and without OIDN
denoising, in 1 and 2 worker processes, with ratios to the raster backend and to the reference's
NVISII figure (5.2 s per image on a GPU). Each worker renders its share of the frames once to warm
up (scene build, pool growth, kernel compilation), then again timed: the figures are steady-state
throughput. CPU seconds per image count every thread of every worker (Dr.Jit's and OIDN's pools
included), so they hold on a shared machine where wall time does not. Workers get
cores / workers Dr.Jit + OIDN threads, as `dope generate` gives them; the `all-cores` row repeats
spp 4 + OIDN with every worker using every core (the previous default) as a baseline.

Also writes a comparison grid (raster | pathtrace spp 4 noisy | spp 4 denoised | spp 64 denoised),
e.g. for docs/images/pathtrace_grid.png.

    python benchmarks/bench_pathtrace.py [--size 512] [--frames 8] [--spp 4 16 64] [--workers 1 2]
                                         [--grid docs/images/pathtrace_grid.png]
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import time
from pathlib import Path

import cv2
import numpy as np

REFERENCE_SECONDS = 5.2  # NVISII path tracing per image on a GPU (dope-reference.md)


@dataclasses.dataclass(frozen=True)
class Job:
    size: int
    renderer: str
    spp: int
    denoise: bool
    threads: int | None  # Dr.Jit/OIDN threads per worker (None: every core)
    indices: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Timing:
    wall: float  # seconds per image, slowest worker (workers run at once)
    cpu: float  # CPU seconds per image, all workers and threads


def _config(size: int, renderer: str, spp: int, denoise: bool):
    from dope_stream.config import GenerateConfig

    return GenerateConfig(width=size, height=size, spp=spp, renderer=renderer, denoise=denoise)


def _run_worker(job: Job) -> tuple[float, float]:
    """(wall, CPU) seconds this worker spends on its frames, after rendering them once untimed."""
    if job.threads is not None:
        from dope_stream.render.pathtrace import THREADS_ENV

        os.environ[THREADS_ENV] = str(job.threads)
    os.environ.setdefault("LP_NUM_THREADS", "0")  # as generate's workers: llvmpipe in the caller's thread
    from dope_stream.assets import build_asset_library
    from dope_stream.render import create_renderer
    from dope_stream.scene import sample_scene

    config = _config(job.size, job.renderer, job.spp, job.denoise)
    assets = build_asset_library(config)
    renderer = create_renderer(job.renderer, assets)
    scenes = [sample_scene(config, assets, index) for index in job.indices]
    for scene in scenes:
        renderer.render(scene)
    wall, cpu = time.perf_counter(), time.process_time()
    for scene in scenes:
        renderer.render(scene)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    renderer.close()
    return wall, cpu


def measure(size: int, renderer: str, spp: int, denoise: bool, frames: int, workers: int, threads: int | None) -> Timing:
    jobs = [Job(size, renderer, spp, denoise, threads, tuple(range(w, frames, workers))) for w in range(workers)]
    # Fresh spawned processes even for one worker: Dr.Jit's thread count is process-wide.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        results = pool.map(_run_worker, jobs)
    return Timing(max(wall for wall, _ in results) / frames, sum(cpu for _, cpu in results) / frames)


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


def _row(name: str, spp: int, denoise: str, workers: int, threads: str, timing: Timing, raster: Timing) -> str:
    return (
        f"{name:<10} {spp:>4} {denoise:>8} {workers:>8} {threads:>8} {timing.wall:>8.3f} {1 / timing.wall:>9.2f} "
        f"{timing.cpu:>8.3f} {timing.wall / raster.wall:>9.1f} {REFERENCE_SECONDS / timing.wall:>11.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=8, help="timed frames per configuration")
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

    cores = os.cpu_count() or 1
    print(f"{args.size}x{args.size}, {args.frames} frames per row (each rendered once untimed first), {cores} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(
        f"{'renderer':<10} {'spp':>4} {'denoise':>8} {'workers':>8} {'threads':>8} {'s/image':>8} {'images/s':>9} "
        f"{'cpu s':>8} {'x raster':>9} {'vs ref 5.2s':>12}"
    )
    for workers in args.workers:
        threads = max(1, cores // workers)
        raster = measure(args.size, "raster", 4, False, args.frames, workers, threads)
        print(_row("raster", 4, "-", workers, "-", raster, raster))
        for spp in args.spp:
            for denoise in (False, True):
                timing = measure(args.size, "pathtrace", spp, denoise, args.frames, workers, threads)
                print(_row("pathtrace", spp, str(denoise), workers, str(threads), timing, raster))
        if threads != cores:
            baseline = measure(args.size, "pathtrace", 4, True, args.frames, workers, None)
            print(_row("pathtrace", 4, "True", workers, "all-cores", baseline, raster))
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
