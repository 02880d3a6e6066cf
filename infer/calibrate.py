"""`dope calibrate`: a checkpoint's distance bias, measured on held-out synthetic frames and stored in it.

Why: the recipe's models put objects too far, nearly always (bottle: median 2.4-3.1% of the
distance on the validation and test sets at 320x240 and 640x480). The keypoints carry the bias, in
every size range: the predicted corners lie about 1.2% too close together, and the out-of-plane tilt
that makes them so (README, "Real photos", session 4) adds the rest. It is the largest error left:
on the bottle's validation set, setting every matched pose's distance to the true one would take the
ADD AUC from 52 to 87, setting its rotation to the true one only to 52.4. One factor per model
corrects most of it (AUC 52 -> 58 there), and the model's own held-out frames measure it.

Steps: `dope infer` with the given options over the frames; predictions matched to the ground truth
as `dope evaluate` does; the median of true over predicted distance of the cuboid centre, over the
matches within `AUC_MAX_M` (a pose off by more says nothing about the bias); the checkpoint's
`distance_scale` multiplied by it (the detector applies it last, after the refinement crops the
bias was measured with, so calibrating twice converges instead of compounding).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dope_stream.errors import DopeError
from dope_stream.symmetry import symmetries_in_folder
from trainer.checkpoint import read_checkpoint, update_meta
from trainer.meta import ModelMeta

from .config import CalibrateConfig
from .evaluate import AUC_MAX_M, Instance, load_model_points, matches, read_image_pairs, score_images
from .inference import run_inference
from .loading import checkpoint_file, with_cuboid

log = logging.getLogger(__name__)

MIN_MATCHES = 10  # fewer good matches than this: no reliable median


@dataclass(frozen=True)
class Calibration:
    checkpoint: Path
    previous_scale: float
    distance_scale: float
    matches: int  # matched detections within AUC_MAX_M the factor was measured on
    auc_before: float  # ADD (ADD-S) AUC of the frames with the previous scale
    auc_after: float  # the same predictions at the new scale


ImagePairs = list[tuple[list[Instance], list[Instance]]]


def distance_ratios(images: ImagePairs, class_name: str, points: np.ndarray, symmetric: bool, centre) -> np.ndarray:
    """True over predicted distance of the cuboid centre, one per match within AUC_MAX_M."""
    ratios = []
    for truths, predictions in images:
        truths = [t for t in truths if t.class_name == class_name]
        predictions = [p for p in predictions if p.class_name == class_name]
        for row, col, error in zip(*matches(predictions, truths, points, symmetric)):
            if error <= AUC_MAX_M:
                true, predicted = (np.linalg.norm(i.pose.apply(np.asarray(centre)[None])[0]) for i in (truths[col], predictions[row]))
                ratios.append(true / predicted)
    return np.asarray(ratios)


def scaled_auc(images: ImagePairs, class_name: str, points: np.ndarray, symmetric: bool, factor: float, centre) -> float:
    """ADD (ADD-S) AUC of one class as `dope evaluate` scores it, the predicted distances times `factor`."""
    scaled = [(truths, [dataclasses.replace(p, pose=p.pose.with_distance_scaled(factor, centre)) for p in predictions])
              for truths, predictions in images]
    metrics = score_images(scaled, len(scaled), lambda _: (points, symmetric), set())
    return metrics["classes"][class_name]["auc"]


def calibrate(config: CalibrateConfig) -> Calibration:
    """Measure the distance bias of --weights (a checkpoint, or a run folder's latest) and, unless
    --no-save, store the corrected scale in that checkpoint."""
    if config.weights.suffix.lower() == ".onnx":
        raise DopeError(f"--weights {config.weights}: calibrate the checkpoint the ONNX model was exported from, then export it again")
    path = checkpoint_file(config.weights)
    meta = with_cuboid(ModelMeta.from_dict(read_checkpoint(path)["meta"]), config)  # the cuboid inference uses
    run_inference(config.model_copy(update={"weights": path, "resume": False}))
    images = read_image_pairs(config.out, config.images)
    points = load_model_points(config.models, meta.class_name)
    symmetric = symmetries_in_folder(config.models, meta.class_name).symmetric or bool(meta.symmetries)
    centre = meta.cuboid.center
    ratios = distance_ratios(images, meta.class_name, points, symmetric, centre)
    if len(ratios) < MIN_MATCHES:
        raise DopeError(
            f"--images {config.images}: only {len(ratios)} detections of '{meta.class_name}' within "
            f"{100 * AUC_MAX_M:.0f} cm of the ground truth (at least {MIN_MATCHES} needed); train longer or give more frames"
        )
    factor = float(np.median(ratios))
    result = Calibration(
        path, meta.distance_scale, meta.distance_scale * factor, len(ratios),
        scaled_auc(images, meta.class_name, points, symmetric, 1.0, centre),
        scaled_auc(images, meta.class_name, points, symmetric, factor, centre),
    )
    if config.save:
        update_meta(path, distance_scale=result.distance_scale)
    return result
