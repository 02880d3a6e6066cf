"""Raster backend speed: milliseconds per 512x512 frame, 10 targets + 20 distractors, built-in assets.

Renders the scenes `dope generate` samples (default config) in this process and prints the mean
render time with 1 and 4 MSAA samples, the triangles drawn per frame, and the ratios to spp 1
(measured in the same run) and to the reference generator's 5.2 s per image.

    python benchmarks/bench_raster.py [--frames 40] [--size 512]
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path

from dope_stream.assets import build_asset_library
from dope_stream.config import GenerateConfig
from dope_stream.render import create_renderer
from dope_stream.scene import sample_scene

REFERENCE_SECONDS_PER_IMAGE = 5.2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = GenerateConfig(out=Path("unused"), width=args.size, height=args.size, nb_objects=10, nb_distractors=20)
    assets = build_asset_library(config)
    renderer = create_renderer("raster", assets)
    scenes = [sample_scene(config, assets, index) for index in range(args.frames)]
    triangles = sum(len(assets.meshes[i.mesh_key].faces) for s in scenes for i in s.instances) / len(scenes)
    print(f"{args.size}x{args.size}, 10 targets + 20 distractors, {triangles:,.0f} triangles per frame on average")
    millis = {}
    for spp in (1, 4):
        renderer.render(replace(scenes[0], spp=spp))  # warm-up: framebuffers, photo uploads
        start = time.perf_counter()
        for scene in scenes:
            renderer.render(replace(scene, spp=spp))
        millis[spp] = (time.perf_counter() - start) / len(scenes) * 1000
        print(
            f"spp {spp}: {millis[spp]:7.1f} ms/frame  ({1000 / millis[spp]:5.1f} frames/s, "
            f"x{millis[spp] / millis[1]:.2f} of spp 1, {REFERENCE_SECONDS_PER_IMAGE * 1000 / millis[spp]:.0f}x faster "
            f"than the reference's {REFERENCE_SECONDS_PER_IMAGE} s/image)"
        )
    renderer.close()


if __name__ == "__main__":
    main()
