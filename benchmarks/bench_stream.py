"""Streaming synthesis on Ray: frames/s of renderer actors, Ray's overhead, and backpressure.

512x512 frames, 10 targets + 20 distractors, raster backend. All figures come from this one run:
(1) a plain local loop (one FrameSynthesizer in this process): the baseline;
(2) 1 and 2 Ray actors, frames drained without writing and written to shards, with the ratio to
    the baseline (actor start-up and asset loading excluded, as for the baseline);
(3) the streaming `RayFrameDataset` drained through a DataLoader by a consumer that does nothing
    (frames/s delivered), with and without writing shards, with fresh frames handed over decoded
    (the default: no codec in the consumer, none at all without shards) and as bytes (`decoded=False`,
    as before), each against plain `generate()` with as many worker processes (steady rate, as in
    benchmarks/bench_generate.py; target: the dataset delivers >= 90% of it);
(4) a consumer that sleeps per batch `--slowdown` times as long as the renderers need for a batch,
    with the renderers' idle share (about 1 - 1/slowdown when backpressure pauses them; near 0 if
    they kept rendering ahead without bound).
With --gpu: one actor per GPU of the (local) Ray cluster instead of CPU actors (skipped, with a
message, when there is no GPU).

    python benchmarks/bench_stream.py [--frames 48] [--size 512] [--gpu]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from torch.utils.data import DataLoader

from bench_generate import steady_rate  # this folder is on sys.path when the script runs
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
    """Frames/s of one synthesizer in this process (built and warmed up before timing)."""
    with FrameSynthesizer(config) as synthesizer:
        synthesizer.render(0)
        start = time.perf_counter()
        for index in range(config.nb_frames):
            synthesizer.render(index)
        return config.nb_frames / (time.perf_counter() - start)


def actor_rate(config: GenerateConfig, actors: int, write: bool) -> tuple[float, float]:
    """(frames/s, actors' idle share) of `actors` Ray actors, optionally writing shards here."""
    stream = FrameStream(config, range(config.nb_frames), actors=actors)
    writer = open_writer(config, {}) if write else None
    for frame in stream:
        if writer is not None:
            writer.add(frame.encoded)
    if writer is not None:
        writer.close()
    return stream.stats.frames / stream.stats.elapsed_s(), stream.stats.idle_share()


def dataset_rate(config: GenerateConfig, batch: int, sleep_s: float, write_shards: bool = False,
                 decoded: bool = True) -> tuple[float, float]:
    """(frames/s delivered, renderers' idle share) of the dataset drained in batches of `batch`."""
    dataset = RayFrameDataset(config, write_shards=write_shards, decoded=decoded)
    delivered = 0
    for _ in DataLoader(dataset, batch_size=batch, collate_fn=list):
        delivered += batch
        time.sleep(sleep_s)
    stats = dataset.last_stream.stats
    return stats.frames / stats.elapsed_s(), stats.idle_share()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48)
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
        print(f"\n{args.size}x{args.size}, 10 targets + 20 distractors, raster, {args.frames} frames")
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
        generated = steady_rate(root / "generate", argparse.Namespace(
            frames=args.frames, size=args.size, image_format="jpg", spp=None, scene="flying"), workers)
        print(f"\nplain generate(), {workers} worker processes: {generated:6.1f} frames/s (steady)")
        print(f"RayFrameDataset, {workers} actor(s), no-op consumer, batches of {args.batch}:")
        print(f"  {'shards':>7} {'handed over':>12} {'frames/s':>9} {'of generate()':>14} {'idle':>6}")
        rates = {}
        for write_shards in (False, True):
            for decoded in (False, True):
                out = root / f"dataset_{write_shards}_{decoded}"
                config = bench_config(out, args.frames, args.size, render_workers=workers, **gpu_overrides)
                rate, idle = dataset_rate(config, args.batch, 0.0, write_shards, decoded)
                rates[write_shards, decoded] = rate
                print(f"  {'yes' if write_shards else 'no':>7} {'decoded' if decoded else 'bytes':>12} {rate:>9.1f} "
                      f"{rate / generated:>13.0%} {idle:>6.0%}")
        config = bench_config(root / "dataset", args.frames, args.size, render_workers=workers, **gpu_overrides)
        sleep_s = args.slowdown * args.batch / rates[False, True]
        rate, idle = dataset_rate(config, args.batch, sleep_s)
        consumer = f"sleeps {sleep_s:.2f} s per batch"
        print(f"  {consumer:<30} {rate:6.1f} frames/s delivered, renderers idle {idle:4.0%} "
              f"(expected ~{1 - 1 / args.slowdown:.0%} when backpressure pauses them)")


if __name__ == "__main__":
    main()
