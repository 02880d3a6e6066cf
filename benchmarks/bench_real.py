"""Real-photo accuracy of a checkpoint: detections, ADD accuracy at 2/5/10 cm, AUC and an overlay grid.

The photos come with ground truth in this project's JSON format beside each image (`STEM.json`:
`camera_data` with the intrinsics, `objects` with `class`, `location`, `quaternion_xyzw`), as in
`../shared/assets/realsample` (20 YCB-Video frames of the mustard bottle). Such frames are a check
only: never train, validate or choose settings on them.

    python benchmarks/bench_real.py --weights RUN_OR_CKPT --images ../shared/assets/realsample \\
        [--input_height 240] [--refine_object_size 160] [--refine_iterations 2] [--subpixel parabola] [--snap_radius 3] [--models dope_stream/assets/objects] [--out out/bench_real]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dope_stream.config import PACKAGE_ASSETS
from dope_stream.errors import DopeError
from infer.config import InferConfig
from infer.evaluate import evaluate_folders, write_metrics
from infer.inference import run_inference
from infer.overlay import write_overlay_grid

ACCURACY_THRESHOLDS_CM = (2, 5, 10)


def evaluate_real(weights: Path, images: Path, models: Path, out: Path, **infer_options) -> dict:
    """Infer on every photo (intrinsics from its JSON; `infer_options`: InferConfig fields, None for
    a field's default), score against the same JSON files, draw the grid."""
    predictions = out / "predictions"
    options = {name: value for name, value in infer_options.items() if value is not None}  # None: InferConfig's default
    config = InferConfig.validated(dict(weights=weights, images=images, out=predictions, resume=False, **options))
    summary = run_inference(config)
    metrics = evaluate_folders(predictions, images, models, symmetric=[])
    write_metrics(metrics, out)
    grid = write_overlay_grid(sorted(predictions.glob("*.png")), out / "overlays.jpg", count=20)
    metrics["seconds_per_image"] = summary.seconds / max(summary.frames, 1)
    metrics["grid"] = str(grid) if grid else None
    return metrics


def summary_lines(metrics: dict) -> list[str]:
    """One line per class: found / instances, ADD accuracy at ACCURACY_THRESHOLDS_CM, AUC."""
    lines = []
    for class_name, result in metrics["classes"].items():
        at = ", ".join(f"< {cm} cm {100 * result['accuracy'][f'{cm / 100:.2f}']:.0f}%" for cm in ACCURACY_THRESHOLDS_CM)
        pixels = result["mean_keypoint_error_px"]
        lines.append(
            f"{class_name}: found {result['matched']} of {result['ground_truth']}, {result['metric']} {at}, "
            f"AUC {100 * result['auc']:.1f}, 2D error {'-' if pixels is None else f'{pixels:.1f} px'}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, required=True, help="training run folder, checkpoint or .onnx")
    parser.add_argument("--images", type=Path, required=True, help="folder of photos with STEM.json ground truth")
    parser.add_argument("--models", type=Path, default=PACKAGE_ASSETS / "objects", help="CLASS/points.xyz per class")
    parser.add_argument("--input_height", type=int, default=None, help="network input height (default: native)")
    parser.add_argument("--refine_object_size", type=int, default=None,
                        help="second pass at this object size (default: the model's; 0: one pass)")
    parser.add_argument("--refine_iterations", type=int, default=None,
                        help="second pass: crops per detection, each around the previous one's pose (default: dope infer's)")
    parser.add_argument("--subpixel", default=None,
                        help="a belief peak's sub-pixel step, parabola or window (default: dope infer's)")
    parser.add_argument("--snap_radius", type=float, default=None,
                        help="offset networks: snap a corner to a belief peak within this many cells (default: dope infer's)")
    parser.add_argument("--out", type=Path, default=Path("out/bench_real"))
    args = parser.parse_args(argv)
    try:
        metrics = evaluate_real(args.weights, args.images, args.models, args.out, input_height=args.input_height,
                                refine_object_size=args.refine_object_size, refine_iterations=args.refine_iterations,
                                subpixel=args.subpixel, snap_radius=args.snap_radius)
    except DopeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(summary_lines(metrics)))
    print(f"{metrics['seconds_per_image'] * 1000:.0f} ms per image; grid: {metrics['grid']}; "
          f"metrics: {args.out / 'metrics.json'}")
    print(json.dumps({c: {k: r[k] for k in ("matched", "ground_truth", "auc")} for c, r in metrics["classes"].items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
