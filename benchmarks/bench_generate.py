"""Generation speed: images/s for 512x512 frames with 10 targets and 20 distractors, end to end.

Prints (1) the time per stage of one frame in this process (sample, render, annotate, encode,
write) and (2) end-to-end `generate()` throughput with 1 and 2 worker processes, the steady rate
(process start-up and asset loading removed by timing a short and a long run), and the ratio to
the reference generator's 5.2 s per image (NVISII path tracing on a GPU). Target: 40 images/s with
2 workers on the 2-core machine.

    python benchmarks/bench_generate.py [--frames 120] [--size 512] [--image_format jpg] [--spp 4]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from dope_stream.annotate import annotate
from dope_stream.config import GenerateConfig
from dope_stream.generate import generate
from dope_stream.scene import sample_scene
from dope_stream.synth import FrameSynthesizer, Sample, encode_members
from dope_stream.writers import open_writer

REFERENCE_SECONDS_PER_IMAGE = 5.2
TARGET_IMAGES_PER_SECOND = 40.0


def bench_config(out: Path, frames: int, size: int, image_format: str, workers: int = 1, spp: int | None = None,
                 scene: str = "flying") -> GenerateConfig:
    return GenerateConfig(
        out=out, nb_frames=frames, width=size, height=size, nb_objects=10, nb_distractors=20,
        image_format=image_format, render_workers=workers, frames_per_shard=50, spp=spp, scene=scene,
    )


def stage_times(config: GenerateConfig, frames: int) -> dict[str, float]:
    """Mean seconds per frame of each stage, in this process."""
    totals = dict.fromkeys(("sample", "render", "annotate", "encode", "write"), 0.0)
    with FrameSynthesizer(config) as synthesizer:
        writer = open_writer(config, synthesizer.class_cuboids())
        synthesizer.render(0)  # warm-up: shader compilation, first uploads
        for index in range(frames):
            t0 = time.perf_counter()
            scene = sample_scene(config, synthesizer.assets, index)
            t1 = time.perf_counter()
            layers = synthesizer.renderer.render(scene)
            t2 = time.perf_counter()
            annotation = annotate(scene, layers, synthesizer.assets)
            t3 = time.perf_counter()
            members = encode_members(layers, annotation, config)
            t4 = time.perf_counter()
            writer.add(Sample(index, members))
            t5 = time.perf_counter()
            for name, seconds in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                totals[name] += seconds
        writer.close()
    return {name: seconds / frames for name, seconds in totals.items()}


def timed_generate(config: GenerateConfig) -> float:
    start = time.perf_counter()
    generate(config)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120, help="frames of the long end-to-end run")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--image_format", default="jpg", choices=("jpg", "png"))
    parser.add_argument("--spp", type=int, default=None, help="raster anti-aliasing samples (default: the config default, 1)")
    parser.add_argument("--scene", default="flying", choices=("flying", "tabletop"),
                        help="tabletop: physics once per views_per_scene (4) frames; 'sample' holds its share")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        stages = stage_times(bench_config(root / "stages", 50, args.size, args.image_format, spp=args.spp, scene=args.scene), 50)
        print(f"\nper-frame stages, one process, {args.size}x{args.size}, {args.scene}, 10 targets + 20 distractors, {args.image_format}:")
        for name, seconds in stages.items():
            print(f"  {name:<9} {seconds * 1000:7.1f} ms")
        print(f"  {'total':<9} {sum(stages.values()) * 1000:7.1f} ms  ({1 / sum(stages.values()):.1f} images/s)")
        short_frames = 10
        print(f"\nend to end (generate(), {args.frames} frames):")
        print(f"  {'workers':>7} {'wall s':>8} {'images/s':>9} {'steady images/s':>16} {'x reference':>12} {'of target':>10}")
        for workers in (1, 2):
            short = timed_generate(bench_config(root / f"short{workers}", short_frames, args.size, args.image_format, workers, args.spp, args.scene))
            long = timed_generate(bench_config(root / f"long{workers}", args.frames, args.size, args.image_format, workers, args.spp, args.scene))
            rate = args.frames / long
            steady = (args.frames - short_frames) / max(long - short, 1e-9)
            print(
                f"  {workers:>7} {long:>8.1f} {rate:>9.1f} {steady:>16.1f} "
                f"{steady * REFERENCE_SECONDS_PER_IMAGE:>11.0f}x {steady / TARGET_IMAGES_PER_SECOND:>9.0%}"
            )
        print(f"\nreference: {REFERENCE_SECONDS_PER_IMAGE} s/image (NVISII, GPU); target {TARGET_IMAGES_PER_SECOND:.0f} images/s with 2 workers")


if __name__ == "__main__":
    main()
