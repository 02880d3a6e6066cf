"""Generation speed: images/s for 512x512 frames with 10 targets and 20 distractors, end to end.

Prints (1) the time per stage of one frame in one process (sample, render, annotate, encode,
write: CPU time of the process, steadier than wall time on a shared machine; llvmpipe renders in
the calling thread, `LP_NUM_THREADS=0`, as in `dope generate`'s worker processes; after
`WARMUP_FRAMES` frames, so photo uploads and shader variants are left out) and (2) end-to-end
`generate()` throughput with 1 and 2 worker processes: the steady rate of `benchmarks/steady.py`
(frames after the first 20% and up to 90% of one run, stamped as they reach the writer; the median
of `--repeats` runs, with their spread), and the ratio to the reference generator's 5.2 s per image
(NVISII path tracing on a GPU). Target: 40 images/s with 2 workers on the 2-core machine.

With `--baseline DIR` (another checkout of this repository, e.g. `git worktree add /tmp/base main`)
every measurement runs for both code trees in turn, in processes of their own importing
`dope_stream` from each tree, and the speed-ups of the current tree over the baseline are printed: a
before/after comparison under the same machine load (the runs alternate between the trees; each
speed-up is the median of the per-repeat ratios).

    python benchmarks/bench_generate.py [--frames 240] [--repeats 3] [--size 512] [--image_format jpg]
                                        [--spp 4] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from steady import Rate, generate_arrivals, steady_rate  # this folder is on sys.path when the script runs

REFERENCE_SECONDS_PER_IMAGE = 5.2
TARGET_IMAGES_PER_SECOND = 40.0
STAGES = ("sample", "render", "annotate", "encode", "write")
STAGE_FRAMES = 50
WARMUP_FRAMES = 40  # most of the 40 built-in photos uploaded, every shader variant compiled


def bench_config(out: Path, frames: int, size: int, image_format: str, workers: int = 1, spp: int | None = None,
                 scene: str = "flying"):
    from dope_stream.config import GenerateConfig

    return GenerateConfig(
        out=out, nb_frames=frames, width=size, height=size, nb_objects=10, nb_distractors=20,
        image_format=image_format, render_workers=workers, frames_per_shard=50, spp=spp, scene=scene,
    )


def stage_times(config) -> dict[str, float]:
    """Mean CPU seconds per frame of each stage, in this process, after `WARMUP_FRAMES` frames."""
    from dope_stream.annotate import annotate
    from dope_stream.scene import sample_scene
    from dope_stream.synth import FrameSynthesizer, Sample, encode_members
    from dope_stream.writers import open_writer

    totals = dict.fromkeys(STAGES, 0.0)
    with FrameSynthesizer(config) as synthesizer:
        writer = open_writer(config, synthesizer.class_cuboids())
        for index in range(STAGE_FRAMES, config.nb_frames):
            synthesizer.render(index)
        for index in range(STAGE_FRAMES):
            t0 = time.process_time()
            scene = sample_scene(config, synthesizer.assets, index)
            t1 = time.process_time()
            layers = synthesizer.renderer.render(scene)
            t2 = time.process_time()
            annotation = annotate(scene, layers, synthesizer.assets)
            t3 = time.process_time()
            members = encode_members(layers, annotation, config)
            t4 = time.process_time()
            writer.add(Sample(index, members))
            t5 = time.process_time()
            for name, seconds in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                totals[name] += seconds
        writer.close()
    return {name: seconds / STAGE_FRAMES for name, seconds in totals.items()}


def measure(part: str, args: argparse.Namespace) -> dict:
    """One measurement in this process: 'stages' (CPU s per stage) or 'workers=N' (steady images/s)."""
    with tempfile.TemporaryDirectory() as tmp:
        if part == "stages":
            frames = STAGE_FRAMES + WARMUP_FRAMES  # warm-up frames: the ones after the measured ones
            return stage_times(bench_config(Path(tmp), frames, args.size, args.image_format, spp=args.spp, scene=args.scene))
        workers = int(part.removeprefix("workers="))
        config = bench_config(Path(tmp), args.frames, args.size, args.image_format, workers, args.spp, args.scene)
        return {"steady": steady_rate(generate_arrivals(config))}


def measure_in(tree: Path | None, part: str, args: argparse.Namespace) -> dict:
    """`measure(part)` in a fresh process importing dope_stream from `tree` (None: this checkout)."""
    env = dict(os.environ, PYTHONPATH=str(tree or Path(__file__).resolve().parents[1]))
    if part == "stages":
        env.setdefault("LP_NUM_THREADS", "0")
    command = [sys.executable, __file__, "--part", part, "--frames", str(args.frames), "--size", str(args.size),
               "--image_format", args.image_format, "--scene", args.scene, *(["--spp", str(args.spp)] if args.spp else [])]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def speedup(ratios: list[float]) -> str:
    """Median of current/baseline ratios (rates; baseline/current for times), blank without a baseline."""
    return f"{statistics.median(ratios):>8.2f}x" if ratios else ""


def report(args: argparse.Namespace) -> None:
    trees = {"current": None, **({"baseline": args.baseline} if args.baseline else {})}
    compared = f" (baseline: {args.baseline}; speed-up of current over it)" if args.baseline else ""
    stages = {name: measure_in(tree, "stages", args) for name, tree in trees.items()}
    print(f"\nper-frame stages, one process, CPU ms, {args.size}x{args.size}, {args.scene}, 10 targets + 20 distractors, "
          f"{args.image_format}{compared}:")
    print(f"  {'stage':<9} " + " ".join(f"{name:>9}" for name in trees) + (" speed-up" if args.baseline else ""))
    for stage in (*STAGES, "total"):
        values = {name: (sum(times.values()) if stage == "total" else times[stage]) * 1000 for name, times in stages.items()}
        print(f"  {stage:<9} " + " ".join(f"{v:>9.1f}" for v in values.values()) + " "
              + (speedup([values["baseline"] / values["current"]]) if args.baseline else ""))
    print(f"\nend to end (generate(), steady images/s of {args.frames}-frame runs, median of {args.repeats} "
          f"[spread]){compared}:")
    print(f"  {'workers':>7} " + " ".join(f"{name:>18}" for name in trees) + f" {'x reference':>12} {'of target':>10}"
          + (" speed-up" if args.baseline else ""))
    for workers in (1, 2):
        runs = {name: [] for name in trees}
        for _ in range(args.repeats):  # the trees alternate: each repeat compares runs under the same load
            for name, tree in trees.items():
                runs[name].append(measure_in(tree, f"workers={workers}", args)["steady"])
        rates = {name: Rate(tuple(values)) for name, values in runs.items()}
        current = rates["current"].median
        ratios = [c / b for c, b in zip(runs["current"], runs.get("baseline", []))]
        print(f"  {workers:>7} " + " ".join(f"{rate.median:>7.1f} [{rate.spread():>9}]" for rate in rates.values())
              + f" {current * REFERENCE_SECONDS_PER_IMAGE:>11.0f}x {current / TARGET_IMAGES_PER_SECOND:>9.0%} "
              + speedup(ratios))
    print(f"\nreference: {REFERENCE_SECONDS_PER_IMAGE} s/image (NVISII, GPU); target {TARGET_IMAGES_PER_SECOND:.0f} images/s with 2 workers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=240, help="frames of each end-to-end run")
    parser.add_argument("--repeats", type=int, default=3, help="end-to-end runs per figure (median)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--image_format", default="jpg", choices=("jpg", "png"))
    parser.add_argument("--spp", type=int, default=None, help="raster anti-aliasing samples (default: the config default, 1)")
    parser.add_argument("--scene", default="flying", choices=("flying", "tabletop"),
                        help="tabletop: physics once per views_per_scene (4) frames; 'sample' holds its share")
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to compare with (before/after)")
    parser.add_argument("--part", default=None, help=argparse.SUPPRESS)  # one measurement, as JSON (internal)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.part:
        print(json.dumps(measure(args.part, args)))
        return
    if args.baseline is not None and not (args.baseline / "dope_stream").is_dir():
        parser.error(f"--baseline {args.baseline}: not a checkout of this repository (no dope_stream folder)")
    report(args)


if __name__ == "__main__":
    main()
