"""What each `dope VERB` runs, given its validated config (see `dope_app.cli`).

Each function imports its stage only when called, so `dope generate` never imports torch.
"""

from __future__ import annotations

import logging

from dope_stream.config import GenerateConfig
from dope_stream.outputs import output_file, output_folder
from infer.config import CalibrateConfig, EvaluateConfig, ExportConfig, InferConfig
from trainer.config import TrainConfig

from .config import DemoConfig
from .environment import passive_openmp_wait

log = logging.getLogger(__name__)


def generate(config: GenerateConfig) -> int:
    from dope_stream.generate import generate as generate_dataset

    if config.layout == "folder" and config.image_format != "png":
        # Said here, to the user who asked for it, not by the writer: the demo's test set is jpg on purpose.
        log.warning("--image_format %s: the reference DOPE train.py reads only .png images", config.image_format)
    out = generate_dataset(config)
    log.info("dataset in %s (%d frames, %s layout)", out, config.nb_frames, config.layout)
    return 0


def train(config: TrainConfig) -> int:
    passive_openmp_wait()
    from trainer.loop import train as train_network

    summary = train_network(config)
    if summary.checkpoint is not None:
        log.info("trained %d steps; checkpoint %s", summary.steps, summary.checkpoint)
    if summary.images:
        log.info("%d images in %.0f s of training; waited for data %.1f%% of the time", summary.images,
                 summary.train_s + summary.wait_s, 100 * summary.wait_share)
    return 0


def infer(config: InferConfig) -> int:
    from infer.inference import run_inference

    summary = run_inference(config)
    if summary.frames:
        log.info("%.1f frames/s including reading and writing", summary.frames / summary.seconds)
    return 0


def calibrate(config: CalibrateConfig) -> int:
    from infer.calibrate import calibrate as measure

    result = measure(config)
    print(f"distance scale {result.distance_scale:.4f} (was {result.previous_scale:.4f}), the median of "
          f"{result.matches} matched detections in {config.images}; their AUC {100 * result.auc_before:.1f} -> "
          f"{100 * result.auc_after:.1f}; " + (f"written to {result.checkpoint}" if config.save else "not written (--no-save)"))
    return 0


def evaluate(config: EvaluateConfig) -> int:
    from rich.console import Console

    from infer.evaluate import evaluate_folders, metrics_table, write_metrics

    from dope_stream.bop import is_bop

    out = output_folder(config.out or (config.pred if config.pred.is_dir() else config.pred.parent), "--out")
    if is_bop(config.gt):
        from infer.bop_io import evaluate_bop

        metrics = evaluate_bop(config.pred, config.gt, config.symmetric, config.min_visibility)
    else:
        metrics = evaluate_folders(config.pred, config.gt, config.models, config.symmetric, config.min_visibility)
    json_path, curve_path = write_metrics(metrics, out)
    Console().print(metrics_table(metrics))
    log.info("wrote %s and %s", json_path, curve_path)
    return 0


def export(config: ExportConfig) -> int:
    from infer.loading import load_torch_network

    for path, option in ((config.onnx, "--onnx"), (config.official, "--official")):
        if path is not None:
            output_file(path, option)
    model, info = load_torch_network(config)
    if config.official is not None:
        from infer.export import export_official

        print(f"exported {export_official(model, info, config.official)} (official layout, `module.` keys; "
              f"mean {list(info.mean)}, std {list(info.std)}, map convention {info.map_convention})")
    if config.onnx is not None:
        _export_onnx(config, model, info)
    return 0


def _export_onnx(config: ExportConfig, model, info) -> None:
    from infer.export import calibration_batches, export_onnx, max_abs_difference, output_difference, quantize_int8

    # Calibration images are read first: a bad folder fails before anything is written.
    batches = calibration_batches(config.calibration, info, config.width, config.height) if config.int8 else []
    path = export_onnx(model, info, config.onnx, config.width, config.height, config.dynamic, config.opset)
    difference = max_abs_difference(model, path, config.width, config.height)
    print(f"exported {path} (input 1x3x{config.height}x{config.width}{', dynamic' if config.dynamic else ''}; "
          f"mean {list(info.mean)}, std {list(info.std)}); max |torch - onnxruntime| = {difference:.2e}")
    if config.int8:
        quantized = quantize_int8(path, path.with_suffix(".int8.onnx"), batches)
        change = output_difference(path, quantized, batches)
        print(f"int8: {quantized} (calibrated on {len(batches)} images); belief |fp32 - int8| max "
              f"{change['max_belief_difference']:.3f}, mean {change['mean_belief_difference']:.4f}; "
              f"{change['peaks_moved']} of {change['peaks']} belief peaks moved by more than one cell")


def demo(config: DemoConfig) -> int:
    passive_openmp_wait()
    from .demo import run_demo

    log.info("report: %s", run_demo(config))
    return 0
