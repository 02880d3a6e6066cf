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

import argparse
import importlib.util
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, field_validator

from dope_stream.atomic import write_atomically
from dope_stream.config import PACKAGE_ASSETS, ConfigModel, FloatPair, IntRange, add_config_arguments, config_from_args
from dope_stream.outputs import output_folder

log = logging.getLogger(__name__)



class DemoConfig(ConfigModel):
    """`dope demo`: generate -> train -> infer -> evaluate on the built-in cracker box."""

    out: Path = Field(Path("out/demo"), description="output folder (report.md, data, run, predictions)")
    train_frames: int = Field(2000, ge=16, description="frames rendered for training (one epoch; later epochs read them back)")
    epochs: int = Field(4, ge=1, description="training epochs")
    test_frames: int = Field(40, ge=1, description="frames of the test set (rendered with seed + 1000)")
    size: int = Field(192, ge=64, le=1024, description="rendered frame width = height = training crop (a multiple of 8)")
    nb_objects: IntRange = Field((1, 1), description="cracker boxes per frame: N or a range a,b")
    nb_distractors: IntRange = Field((1, 3), description="distractors per frame: N or a range a,b")
    depth_range: FloatPair = Field((0.3, 0.7), description="near,far distance of the boxes from the camera (m): large in the frame")
    max_rotation: float = Field(
        45.0, gt=0, le=180,
        description="largest angle (degrees) of a box away from upright facing the camera. 45: corner identities are "
        "learnt in minutes (validation keypoint error 6.5 px after 250 steps); 180 (all orientations) needs far "
        "longer: after 3,000 CPU steps the corners were found but only 23% had the right identity (chance 12.5%)",
    )
    batch_size: int = Field(8, ge=1, description="training batch size")
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    warmup_steps: int = Field(30, ge=0, description="learning-rate warm-up steps (short: the run is a few hundred steps)")
    workers: int = Field(2, ge=1, description="rendering processes (while they render, training takes the cores left, at least one)")
    stream: bool = Field(True, description="train on the live stream (frames rendered during training) when available")
    seed: int = Field(0, ge=0, description="seed of the training frames; the test set uses seed + 1000")
    device: str = Field("cpu", description="device for training and inference (cpu, cuda)")

    @field_validator("size")
    @classmethod
    def _multiple_of_8(cls, size: int) -> int:
        if size % 8:
            raise ValueError(f"must be a multiple of 8 (the network's output stride), e.g. {size - size % 8}")
        return size


@dataclass
class StageTime:
    name: str
    seconds: float
    detail: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, DemoConfig)


def run(args: argparse.Namespace) -> int:
    from trainer.cli import passive_openmp_wait

    passive_openmp_wait()
    report = run_demo(config_from_args(DemoConfig, args))
    log.info("report: %s", report)
    return 0


def run_demo(config: DemoConfig) -> Path:
    """All stages; returns the path of report.md."""
    from trainer.checkpoint import latest_checkpoint

    from .config import InferConfig
    from .evaluate import evaluate_folders, write_metrics
    from .inference import run_inference
    from .overlay import write_overlay_grid

    # Importing triton (torch._dynamo pulls it in, e.g. from the optimiser) after Mesa's EGL is loaded
    # by in-process rendering segfaults; loaded first, both coexist.
    import torch._dynamo  # noqa: F401

    output_folder(config.out, "--out")
    times: list[StageTime] = []
    run_dir = config.out / "run"
    times.append(_train(config, run_dir))

    start = time.perf_counter()
    test_dir = _generate(_generate_config(config, config.out / "test", config.test_frames, config.seed + 1000, "folder"))
    times.append(StageTime("render test set", time.perf_counter() - start, f"{config.test_frames} frames"))

    checkpoint = latest_checkpoint(run_dir)
    predictions = config.out / "predictions"
    start = time.perf_counter()
    summary = run_inference(InferConfig(weights=checkpoint, images=test_dir, out=predictions, device=config.device))
    times.append(StageTime("inference", time.perf_counter() - start, f"{summary.detections} detections"))

    start = time.perf_counter()
    metrics = evaluate_folders(predictions, test_dir, PACKAGE_ASSETS / "objects", [], min_visibility=0.1)
    write_metrics(metrics, config.out)
    times.append(StageTime("evaluation", time.perf_counter() - start, "ADD, visibility > 0.1"))

    grid = write_overlay_grid(sorted(predictions.glob("*.png")), config.out / "overlays.jpg")
    return write_report(config, metrics, times, grid)


def _generate_config(config: DemoConfig, out: Path, frames: int, seed: int, layout: str):
    from dope_stream.config import GenerateConfig

    return GenerateConfig(
        out=out, nb_frames=frames, seed=seed, layout=layout, width=config.size, height=config.size,
        nb_objects=config.nb_objects, nb_distractors=config.nb_distractors, depth_range=config.depth_range,
        max_rotation=config.max_rotation, workers=config.workers,
    )


def _generate(generate_config) -> Path:
    from dope_stream.generate import generate

    return generate(generate_config)


def streaming_available() -> bool:
    """The Ray stream (dope_stream.stream) and the trainer's side of it are both installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("dope_stream.stream", "trainer.streaming"))


def _train(config: DemoConfig, run_dir: Path) -> StageTime:
    """Train (resuming any earlier run in run_dir); streaming when asked for and installed."""
    from trainer.config import TrainConfig
    from trainer.loop import train

    common = dict(
        out=run_dir, net="light", epochs=config.epochs, batch_size=config.batch_size, image_size=config.size,
        lr=config.lr, warmup_steps=config.warmup_steps, resume=True, seed=config.seed,
        device="cuda" if config.device.startswith("cuda") else "cpu", save_every=50, val_fraction=0.0,
    )
    data = _generate_config(config, config.out / "train", config.train_frames, config.seed, "shards")
    start = time.perf_counter()
    if config.stream and streaming_available():
        stream_yaml = config.out / "stream.yaml"
        stream_yaml.write_text(data.to_yaml())
        # The Ray actors render and encode the frames already: no loader processes on top.
        summary = train(TrainConfig(stream=stream_yaml, stream_frames_per_epoch=config.train_frames, workers=0, **common))
        how = "live stream (rendered during training)"
    else:
        if config.stream:
            log.warning("live streaming is not installed: rendering the training set first")
        _generate(data)
        # One loader process is enough for these small frames and leaves the cores to training.
        summary = train(TrainConfig(data=[data.out], workers=1, **common))
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
