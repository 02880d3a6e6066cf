"""`dope demo`: the whole pipeline on the built-in assets, ending in a report a newcomer can open.

1. train the `light` network on frames rendered during the run (the live stream; or, when the
   streaming module is not installed, on a dataset rendered first),
2. render a separate test set with another seed (DOPE folder layout),
3. detect and estimate poses on it, 4. evaluate ADD against the ground truth,
5. write `report.md`: stage timings, throughput, the metrics table, the accuracy curve and a grid of
   overlays.

Every stage resumes: re-running the same command after a kill continues where it stopped, and a
finished stage is skipped. The defaults aim at about 15 minutes on a 2-core CPU.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from dope_stream.exchange import write_atomically
from dope_stream.outputs import output_folder
from dope_stream.config import GenerateConfig

from .config import DemoConfig, DopeConfig
from .environment import with_backend_environment

log = logging.getLogger(__name__)


@dataclass
class StageTime:
    name: str
    seconds: float
    detail: str


def run_demo(config: DemoConfig) -> Path:
    """All stages; returns the path of report.md."""
    from infer.config import InferConfig
    from infer.evaluate import evaluate_folders, write_metrics
    from infer.inference import run_inference
    from infer.overlay import write_overlay_grid
    from trainer.checkpoint import latest_checkpoint

    # Importing triton (torch._dynamo pulls it in, e.g. from the optimiser) after Mesa's EGL is loaded
    # by in-process rendering segfaults; loaded first, both coexist.
    import torch._dynamo  # noqa: F401

    streaming = config.stream and streaming_available()
    if config.stream and not streaming:
        log.warning("live streaming is not installed: rendering the training set first")
    tree = config.tree(streaming)
    output_folder(config.out, "--out")
    times: list[StageTime] = [_train(tree, streaming)]

    start = time.perf_counter()
    test_dir = _generate(tree.generate)
    times.append(StageTime("render test set", time.perf_counter() - start, f"{config.test_frames} frames"))

    evaluation = tree.evaluate
    start = time.perf_counter()
    infer_config = InferConfig(weights=latest_checkpoint(tree.train.out), images=test_dir, out=evaluation.pred, device=config.device)
    summary = run_inference(infer_config)
    times.append(StageTime("inference", time.perf_counter() - start, f"{summary.detections} detections"))

    start = time.perf_counter()
    metrics = evaluate_folders(evaluation.pred, evaluation.gt, evaluation.models, evaluation.symmetric, evaluation.min_visibility)
    write_metrics(metrics, evaluation.out)
    times.append(StageTime("evaluation", time.perf_counter() - start, f"ADD, visibility > {evaluation.min_visibility}"))

    grid = write_overlay_grid(sorted(evaluation.pred.glob("*.png")), config.out / "overlays.jpg")
    return write_report(config, metrics, times, grid)


def _generate(generate_config: GenerateConfig) -> Path:
    from dope_stream.generate import generate

    return generate(with_backend_environment(generate_config))


def streaming_available() -> bool:
    """The Ray stream (dope_stream.stream) and the trainer's side of it are both installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("dope_stream.stream", "trainer.streaming"))


def _train(tree: DopeConfig, streaming: bool) -> StageTime:
    """Train (resuming any earlier run); on the live stream, or on a dataset rendered first."""
    from trainer.loop import train

    config = tree.train
    start = time.perf_counter()
    if streaming:
        summary = train(config.model_copy(update={"stream": with_backend_environment(config.stream)}))
        how = "live stream (rendered during training)"
    else:
        _generate(tree.demo.training_frames())
        summary = train(config)
        how = "rendered dataset"
    seconds = time.perf_counter() - start
    images = len(summary.keys_seen)
    rate = f", {images / seconds:.1f} images/s" if images else " (already trained)"
    return StageTime("train", seconds, f"{how}: {images} images{rate}")


def write_report(config: DemoConfig, metrics: dict, times: list[StageTime], grid: Path | None) -> Path:
    lines = [
        "# dope demo report", "",
        f"Light network trained for {config.epochs} epochs of {config.train_frames} synthetic {config.size}x{config.size} "
        f"frames of the cracker box; tested on {config.test_frames} frames rendered with another seed.", "",
        "## Stages", "", "| stage | time | detail |", "|---|---|---|",
    ]
    lines += [f"| {t.name} | {t.seconds:.0f} s | {t.detail} |" for t in times]
    lines += [
        "", "## Pose accuracy (ADD)", "",
        "| class | GT | matched | missed | false pos. | <2 cm | <5 cm | <10 cm | AUC (0-10 cm) | 2D error (px) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in metrics["classes"].items():
        keypoint = "-" if s["mean_keypoint_error_px"] is None else f"{s['mean_keypoint_error_px']:.1f}"
        acc = s["accuracy"]
        lines.append(
            f"| {name} | {s['ground_truth']} | {s['matched']} | {s['missed']} | {s['false_positives']} | "
            f"{acc['0.02']:.2f} | {acc['0.05']:.2f} | {acc['0.10']:.2f} | {s['auc'] * 100:.1f} | {keypoint} |"
        )
    lines += ["", "![accuracy curve](accuracy_curve.png)", ""]
    if grid is not None:
        lines += ["## Detections on the test set", "", f"![overlays]({grid.name})", ""]
    lines += ["Full numbers: `metrics.json`; per-image predictions and overlays: `predictions/`.", ""]
    path = config.out / "report.md"
    write_atomically(path, lambda tmp: tmp.write_text("\n".join(lines)))
    (config.out / "stages.json").write_text(json.dumps([t.__dict__ for t in times], indent=1))
    return path
