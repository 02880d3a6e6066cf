"""`dope infer`, `dope evaluate`, `dope export`: thin wrappers around the library."""

from __future__ import annotations

import argparse
import logging

from dope_stream.config import add_config_arguments, config_from_args
from dope_stream.outputs import output_file, output_folder

from .config import EvaluateConfig, ExportConfig, InferConfig

log = logging.getLogger(__name__)


def add_infer_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, InferConfig)


def run_infer(args: argparse.Namespace) -> int:
    from .inference import run_inference

    summary = run_inference(config_from_args(InferConfig, args))
    if summary.frames:
        log.info("%.1f frames/s including reading and writing", summary.frames / summary.seconds)
    return 0


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, EvaluateConfig)


def run_evaluate(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .evaluate import evaluate_folders, metrics_table, write_metrics

    config = config_from_args(EvaluateConfig, args)
    out = output_folder(config.out or config.pred, "--out")
    metrics = evaluate_folders(config.pred, config.gt, config.models, config.symmetric, config.min_visibility)
    json_path, curve_path = write_metrics(metrics, out)
    Console().print(metrics_table(metrics))
    log.info("wrote %s and %s", json_path, curve_path)
    return 0


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, ExportConfig)


def run_export(args: argparse.Namespace) -> int:
    from .export import calibration_batches, export_onnx, max_abs_difference, output_difference, quantize_int8
    from .loading import load_torch_network

    config = config_from_args(ExportConfig, args)
    output_file(config.onnx, "--onnx")
    model, info = load_torch_network(config)
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
    return 0
