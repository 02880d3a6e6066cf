"""Generation speed: images/s for 512x512 frames with 10 targets and 20 distractors, end to end.

Prints (1) the time per stage of one frame in one process (sample, render, annotate, encode,
write: CPU time of the process, steadier than wall time on a shared machine) and (2) end-to-end
`generate()` throughput with 1 and 2 worker processes, the steady rate (process start-up and asset
loading removed by timing a short and a long run), and the ratio to the reference generator's 5.2 s
per image (NVISII path tracing on a GPU). Target: 40 images/s with 2 workers on the 2-core machine.

With `--baseline DIR` (another checkout of this repository, e.g. `git worktree add /tmp/base main`)
every measurement runs for both code trees in turn, in processes of their own importing
`dope_stream` from each tree, and the speed-ups of the current tree over the baseline are printed: a before/after
comparison under the same machine load.

    python benchmarks/bench_generate.py [--frames 120] [--size 512] [--image_format jpg] [--spp 4]
                                        [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REFERENCE_SECONDS_PER_IMAGE = 5.2
TARGET_IMAGES_PER_SECOND = 40.0
STAGES = ("sample", "render", "annotate", "encode", "write")
SHORT_FRAMES = 10


def bench_config(out: Path, frames: int, size: int, image_format: str, workers: int = 1, spp: int | None = None,
                 scene: str = "flying"):
    from dope_stream.config import GenerateConfig

    return GenerateConfig(
        out=out, nb_frames=frames, width=size, height=size, nb_objects=10, nb_distractors=20,
        image_format=image_format, render_workers=workers, frames_per_shard=50, spp=spp, scene=scene,
    )


def stage_times(config, frames: int) -> dict[str, float]:
    """Mean CPU seconds per frame of each stage, in this process."""
    from dope_stream.annotate import annotate
    from dope_stream.scene import sample_scene
    from dope_stream.synth import FrameSynthesizer, Sample, encode_members
    from dope_stream.writers import open_writer

    totals = dict.fromkeys(STAGES, 0.0)
    with FrameSynthesizer(config) as synthesizer:
        writer = open_writer(config, synthesizer.class_cuboids())
        synthesizer.render(0)  # warm-up: shader compilation, first uploads
        for index in range(frames):
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
    return {name: seconds / frames for name, seconds in totals.items()}


def steady_rate(root: Path, args: argparse.Namespace, workers: int) -> float:
    """Steady images/s of `generate()` with `workers` processes: a long run minus a short one."""
    from dope_stream.generate import generate

    def seconds(frames: int) -> float:
        config = bench_config(root / f"run{frames}_{workers}", frames, args.size, args.image_format, workers, args.spp, args.scene)
        start = time.perf_counter()
        generate(config)
        return time.perf_counter() - start

    short, long = seconds(SHORT_FRAMES), seconds(args.frames)
    return (args.frames - SHORT_FRAMES) / max(long - short, 1e-9)


def measure(part: str, args: argparse.Namespace) -> dict:
    """One measurement in this process: 'stages' or 'workers=N'."""
    with tempfile.TemporaryDirectory() as tmp:
        if part == "stages":
            return stage_times(bench_config(Path(tmp), 50, args.size, args.image_format, spp=args.spp, scene=args.scene), 50)
        return {"steady": steady_rate(Path(tmp), args, int(part.removeprefix("workers=")))}


def measure_in(tree: Path | None, part: str, args: argparse.Namespace) -> dict:
    """`measure(part)` in a fresh process importing dope_stream from `tree` (None: this checkout)."""
    env = dict(os.environ, PYTHONPATH=str(tree or Path(__file__).resolve().parents[1]))
    command = [sys.executable, __file__, "--part", part, "--frames", str(args.frames), "--size", str(args.size),
               "--image_format", args.image_format, "--scene", args.scene, *(["--spp", str(args.spp)] if args.spp else [])]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def speedup(faster: float, slower: float | None) -> str:
    """faster / slower (rates: current / baseline; times: baseline / current), blank without a baseline."""
    return f"{faster / slower:>8.2f}x" if slower else ""


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
              + (speedup(values["baseline"], values["current"]) if args.baseline else ""))
    print(f"\nend to end (generate(), steady images/s from {SHORT_FRAMES} and {args.frames} frames){compared}:")
    print(f"  {'workers':>7} " + " ".join(f"{name:>9}" for name in trees) + f" {'x reference':>12} {'of target':>10}"
          + (" speed-up" if args.baseline else ""))
    for workers in (1, 2):
        rates = {name: measure_in(tree, f"workers={workers}", args)["steady"] for name, tree in trees.items()}
        current = rates["current"]
        print(f"  {workers:>7} " + " ".join(f"{rate:>9.1f}" for rate in rates.values())
              + f" {current * REFERENCE_SECONDS_PER_IMAGE:>11.0f}x {current / TARGET_IMAGES_PER_SECOND:>9.0%} "
              + speedup(current, rates.get("baseline")))
    print(f"\nreference: {REFERENCE_SECONDS_PER_IMAGE} s/image (NVISII, GPU); target {TARGET_IMAGES_PER_SECOND:.0f} images/s with 2 workers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120, help="frames of the long end-to-end run")
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
