"""Streaming synthesis on Ray: frames/s of renderer actors, Ray's overhead, and backpressure.

512x512 frames, 10 targets + 20 distractors, raster backend. All figures come from this one run and
are steady rates measured one way (`benchmarks/steady.py`: frames after the first 20% and up to 90%
of a run, stamped as the consumer gets them, so start-up and asset loading are left out):
(1) a plain local loop (one FrameSynthesizer in this process): the baseline;
(2) 1 and 2 Ray actors, frames drained without writing and written to shards, with the ratio to
    the baseline;
(3) the streaming `RayFrameDataset` drained through a DataLoader by a consumer that does nothing
    (frames/s delivered), with and without writing shards, with fresh frames handed over decoded
    (the default: no codec in the consumer, none at all without shards) and as bytes (`decoded=False`),
    each against plain `generate()` with as many worker processes, the two measured in turn
    `--repeats` times: each figure is the median of its runs [their spread], each share the median
    of the per-repeat ratios (target: the dataset delivers >= 90% of generate());
(4) a consumer that sleeps per batch `--slowdown` times as long as the renderers need for a batch,
    with the renderers' idle share (about 1 - 1/slowdown when backpressure pauses them; near 0 if
    they kept rendering ahead without bound).
With --gpu: one actor per GPU of the (local) Ray cluster instead of CPU actors (skipped, with a
message, when there is no GPU).

    python benchmarks/bench_stream.py [--frames 240] [--repeats 3] [--size 512] [--gpu]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

from torch.utils.data import DataLoader

from steady import Rate, generate_arrivals, stamped, steady_rate  # this folder is on sys.path when the script runs
from dope_stream.config import GenerateConfig
from dope_stream.stream.dataset import RayFrameDataset
from dope_stream.stream.frames import FrameStream, plan_actors
from dope_stream.stream.session import ray_session
from dope_stream.synth import FrameSynthesizer
from dope_stream.writers import open_writer


def bench_config(out: Path, frames: int, size: int, **overrides) -> GenerateConfig:
    values = dict(
        out=out, nb_frames=frames, width=size, height=size, nb_objects=10, nb_distractors=20, scene="flying",
        frames_per_shard=16, ray="local",
    )
    values.update(overrides)
    return GenerateConfig(**values)


def local_loop_rate(config: GenerateConfig) -> float:
    """Steady frames/s of one synthesizer in this process."""
    arrivals: list[float] = []
    with FrameSynthesizer(config) as synthesizer:
        for _ in stamped(map(synthesizer.render, range(config.nb_frames)), arrivals):
            pass
    return steady_rate(arrivals)


def actor_rate(config: GenerateConfig, actors: int, write: bool) -> tuple[float, float]:
    """(steady frames/s, actors' idle share) of `actors` Ray actors, optionally writing shards here."""
    stream = FrameStream(config, range(config.nb_frames), actors=actors)
    writer = open_writer(config, {}) if write else None
    arrivals: list[float] = []
    for frame in stamped(stream, arrivals):
        if writer is not None:
            writer.add(frame.encoded)
    if writer is not None:
        writer.close()
    return steady_rate(arrivals), stream.stats.idle_share()


def dataset_rate(config: GenerateConfig, batch: int, sleep_s: float, write_shards: bool = False,
                 decoded: bool = True) -> tuple[float, float]:
    """(steady frames/s delivered, renderers' idle share) of the dataset drained in batches of `batch`."""
    dataset = RayFrameDataset(config, write_shards=write_shards, decoded=decoded)
    arrivals: list[float] = []
    for samples in DataLoader(dataset, batch_size=batch, collate_fn=list):
        arrivals.extend([time.perf_counter()] * len(samples))
        time.sleep(sleep_s)
    return steady_rate(arrivals), dataset.last_stream.stats.idle_share()


def dataset_against_generate(root: Path, args: argparse.Namespace, workers: int, gpu_overrides: dict) -> float:
    """Prints the dataset's rows against `generate()` (runs interleaved); returns the decoded rate
    without shards (for the slow consumer)."""
    variants = [(write_shards, decoded) for write_shards in (False, True) for decoded in (False, True)]
    generated: list[float] = []
    delivered: dict[tuple[bool, bool], list[float]] = {variant: [] for variant in variants}
    for repeat in range(args.repeats):
        config = bench_config(root / f"generate{repeat}", args.frames, args.size, render_workers=workers, ray=None)
        generated.append(steady_rate(generate_arrivals(config)))
        for write_shards, decoded in variants:
            out = root / f"dataset{repeat}_{write_shards}_{decoded}"
            config = bench_config(out, args.frames, args.size, render_workers=workers, **gpu_overrides)
            delivered[write_shards, decoded].append(dataset_rate(config, args.batch, 0.0, write_shards, decoded)[0])
    plain = Rate(tuple(generated))
    print(f"\nplain generate(), {workers} worker processes: {plain.median:6.1f} frames/s [{plain.spread()}]")
    print(f"RayFrameDataset, {workers} actor(s), no-op consumer, batches of {args.batch}:")
    print(f"  {'shards':>7} {'handed over':>12} {'frames/s':>9} {'[spread]':>11} {'of generate()':>14}")
    for (write_shards, decoded), runs in delivered.items():
        rate = Rate(tuple(runs))
        share = statistics.median(d / g for d, g in zip(runs, generated))
        print(f"  {'yes' if write_shards else 'no':>7} {'decoded' if decoded else 'bytes':>12} {rate.median:>9.1f} "
              f"[{rate.spread():>9}] {share:>13.0%}")
    return Rate(tuple(delivered[False, True])).median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=240, help="frames of each run")
    parser.add_argument("--repeats", type=int, default=3, help="runs of generate() and of each dataset variant")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8, help="frames per batch of the dataset consumer")
    parser.add_argument(
        "--slowdown", type=float, default=2.0,
        help="the slow consumer sleeps this many times the renderers' time per batch (2: idle ~50%%)",
    )
    parser.add_argument("--gpu", action="store_true", help="one actor per GPU instead of CPU actors")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp, ray_session("local"):
        root = Path(tmp)
        gpu_overrides = {"actor_gpus": 1.0 if args.gpu else 0.0}
        base = bench_config(root / "base", args.frames, args.size, **gpu_overrides)
        if args.gpu and plan_actors(base).num_gpus == 0:
            print("--gpu: the Ray cluster has no GPU; nothing to measure")
            return
        baseline = local_loop_rate(base)
        print(f"\n{args.size}x{args.size}, 10 targets + 20 distractors, raster, {args.frames} frames per run")
        print(f"plain local loop (baseline): {baseline:6.1f} frames/s")
        print(f"\n{'actors':>8} {'shards':>7} {'frames/s':>9} {'x baseline':>11} {'idle':>6}")
        counts = [plan_actors(base).count] if args.gpu else [1, 2]
        for actors in counts:
            for write in (False, True):
                out = root / f"actors{actors}_{write}"
                config = bench_config(out, args.frames, args.size, render_workers=actors, **gpu_overrides)
                rate, idle = actor_rate(config, actors, write)
                label = f"{actors}{' GPU' if args.gpu else ''}"
                print(f"{label:>8} {'yes' if write else 'no':>7} {rate:>9.1f} {rate / baseline:>10.2f}x {idle:>6.0%}")
        workers = counts[-1]
        fast = dataset_against_generate(root, args, workers, gpu_overrides)
        config = bench_config(root / "dataset", args.frames, args.size, render_workers=workers, **gpu_overrides)
        sleep_s = args.slowdown * args.batch / fast
        rate, idle = dataset_rate(config, args.batch, sleep_s)
        consumer = f"sleeps {sleep_s:.2f} s per batch"
        print(f"  {consumer:<30} {rate:6.1f} frames/s delivered, renderers idle {idle:4.0%} "
              f"(expected ~{1 - 1 / args.slowdown:.0%} when backpressure pauses them)")


if __name__ == "__main__":
    main()
