"""Inference speed at 640x480: frames/s for `light` and `dope`, torch and onnxruntime, with decoding
and PnP included.

Every figure is a whole `Detector.detect` call (resize, normalise, network, decode, PnP) on a
640x480 image. Untrained weights find no objects, so the decode + PnP cost of a busy frame (three
objects with all keypoints, from ground-truth maps) is measured separately and added for the
"busy frame" column. `light` also runs int8-quantised (`dope export --int8`), and on the image
downscaled to height 400, as the DOPE reference suggests (400-500).
Ratios are against torch `light` at full size, measured in the same run; the target is light >= 30
fps on the 2-core machine.

    python benchmarks/bench_infer.py [--repeats 20] [--networks light dope] [--threads N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from dope_stream.geometry import Cuboid, Intrinsics, Pose, pixel_to_map, projected_cuboid
from infer.detector import Detector, TorchBackend, network_input
from infer.export import export_onnx, quantize_int8
from infer.loading import OnnxBackend
from infer.pnp import solve_pose
from trainer.decode import DecodeSettings, decode
from trainer.meta import ModelMeta
from trainer.networks import build_network

WIDTH, HEIGHT = 640, 480
INTRINSICS = Intrinsics(600.0, 600.0, 319.5, 239.5, WIDTH, HEIGHT)
CUBOID = Cuboid((0.0, 0.0, 0.0), (0.16, 0.21, 0.07))
TARGET_FPS = 30.0
DOWNSCALED_HEIGHT = 400  # extra light row: the network sees 536x400 (--input_height 400)


def seconds_per_call(function, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        function()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def busy_maps(stride: int = 8, sigma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Belief/affinity maps of three objects with all 9 keypoints (what a trained net outputs)."""
    rng = np.random.default_rng(0)
    h, w = HEIGHT // stride, WIDTH // stride
    ys, xs = np.mgrid[0:h, 0:w]
    belief, affinity = np.zeros((9, h, w), np.float32), np.zeros((16, h, w), np.float32)
    for x in (-0.15, 0.0, 0.15):
        pose = Pose(Rotation.random(random_state=rng).as_matrix(), np.array([x, 0.0, 0.8]))
        uv = projected_cuboid(CUBOID, pose, INTRINSICS)
        xy = pixel_to_map(uv, stride)
        for k in range(9):
            d2 = (xs - xy[k, 0]) ** 2 + (ys - xy[k, 1]) ** 2
            belief[k] = np.maximum(belief[k], np.exp(-d2 / (2 * sigma**2)))
            if k < 8:
                affinity[2 * k : 2 * k + 2, d2 <= 2.25] = ((uv[8] - uv[k]) / np.linalg.norm(uv[8] - uv[k]))[:, None]
    return belief, affinity


def post_processing_seconds(repeats: int) -> float:
    belief, affinity = busy_maps()

    def run():
        for obj in decode(belief, affinity, 8, DecodeSettings()):
            solve_pose(obj.uv, CUBOID, INTRINSICS)

    return seconds_per_call(run, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed frames per configuration (dope: a quarter)")
    parser.add_argument("--networks", nargs="+", default=["light", "dope"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image = np.random.default_rng(1).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    post = post_processing_seconds(args.repeats * 5)
    print(f"{WIDTH}x{HEIGHT}, {args.threads} threads; decode + PnP of 3 objects: {post * 1000:.2f} ms")
    print(f"{'network':<8}{'backend':<13}{'net input':>10}{'ms/frame':>10}{'fps':>8}{'busy fps':>10}{'vs torch light':>16}")
    baseline = None
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.networks:
            torch.manual_seed(0)
            model = build_network(name, pretrained=False).eval()
            info = ModelMeta(name, "box", CUBOID, None, None, (0.5,) * 3, (0.5,) * 3)
            onnx_path = export_onnx(model, info, Path(tmp) / f"{name}.onnx", WIDTH, HEIGHT)
            repeats = args.repeats if name == "light" else max(2, args.repeats // 4)
            runs = [("torch", TorchBackend(model), None), ("onnxruntime", OnnxBackend(onnx_path, args.threads), None)]
            if name == "light":
                # int8 (speed does not depend on what the calibration images show)
                calibration = [network_input(image, (WIDTH, HEIGHT), info.mean, info.std)]
                int8 = quantize_int8(onnx_path, Path(tmp) / "light.int8.onnx", calibration)
                runs.append(("onnx int8", OnnxBackend(int8, args.threads), None))
                # the same 640x480 images, downscaled for the network (Detector resizes)
                dynamic = export_onnx(model, info, Path(tmp) / "dynamic.onnx", WIDTH, HEIGHT, dynamic=True)
                runs.append(("onnxruntime", OnnxBackend(dynamic, args.threads), DOWNSCALED_HEIGHT))
            for backend_name, backend, input_height in runs:
                detector = Detector(backend, info, input_height=input_height)
                seconds = seconds_per_call(lambda: detector.detect(image, INTRINSICS), repeats, warmup=1)
                baseline = baseline or seconds
                busy = 1.0 / (seconds + post)
                net_w, net_h = detector.network_size(WIDTH, HEIGHT)
                print(f"{name:<8}{backend_name:<13}{f'{net_w}x{net_h}':>10}{seconds * 1000:>10.1f}{1 / seconds:>8.1f}"
                      f"{busy:>10.1f}{baseline / seconds:>15.2f}x")
    print(f"target: light >= {TARGET_FPS:.0f} fps")


if __name__ == "__main__":
    main()
