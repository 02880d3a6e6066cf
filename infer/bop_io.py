"""BOP datasets in `dope infer` and `dope evaluate` (the format itself: `dope_stream.bop`).

- `dope infer --images BOP_DIR --bop_csv results.csv`: every annotated (test: every targeted) image
  of the dataset with its own camera from scene_camera.json; per-image JSON/overlays as usual (stem
  `SCENE_IM`) and one BOP result CSV that bop_toolkit scores (R row-major, t in mm, time per image).
- `dope evaluate --gt BOP_DIR --pred results.csv|PRED_DIR`: ADD/ADD-S against the dataset's ground
  truth (test_targets_bop19.json restricts it as in the BOP challenge), model points from its
  `models/obj_*.ply` (mm -> m); classes with symmetries in models_info.json use ADD-S.
"""

from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dope_stream.bop import BopDataset, BopResult, index_bop, read_results_csv, write_results_csv
from dope_stream.errors import DopeError
from dope_stream.geometry import Intrinsics, Pose, projected_cuboid
from dope_stream.symmetry import MM, bop_class_name

from .evaluate import Instance, load_model_points, read_instances, score_images

log = logging.getLogger(__name__)

BOP_CLASS = re.compile(r"obj_(\d+)$")


def bop_obj_id(class_name: str, given: int | None) -> int:
    """The obj_id of a detected class: `given`, or the number in a BOP class name `obj_000005`."""
    if given is not None:
        return given
    match = BOP_CLASS.match(class_name)
    if match is None:
        raise DopeError(f"option 'bop_obj_id': class '{class_name}' is not a BOP name (obj_000001 ...); give its obj_id")
    return int(match.group(1))


def infer_bop(detector, config, save_frame) -> tuple[int, int, int]:
    """Run `detector` over a BOP dataset; returns (images done, skipped, detections)."""
    from .images import read_image

    dataset = index_bop(config.images)
    obj_id = bop_obj_id(detector.info.class_name, config.bop_obj_id)
    results, done, found = [], 0, 0
    for image_info in tqdm(dataset.images, desc="infer", unit="img", disable=len(dataset.images) < 2):
        image = read_image(image_info.rgb)
        intrinsics = Intrinsics.from_json(image_info.annotation["camera_data"])
        start = time.perf_counter()
        detections = detector.detect(image, intrinsics)
        seconds = time.perf_counter() - start
        save_frame(image_info.key, image, detections, intrinsics)
        results.extend(
            BopResult(image_info.scene_id, image_info.im_id, obj_id, d.score, d.pose, seconds) for d in detections
        )
        done, found = done + 1, found + len(detections)
    if config.bop_csv is not None:
        write_results_csv(config.bop_csv, results)
        log.info("BOP results: %s (%d estimates)", config.bop_csv, len(results))
    return done, 0, found


def evaluate_bop(pred: Path, root: Path, symmetric: list[str], min_visibility: float = 0.0) -> dict:
    """Metrics of predictions (a BOP result CSV or a folder of `dope infer` JSON named SCENE_IM)
    against a BOP dataset's ground truth."""
    dataset = index_bop(root)
    predictions = _predictions_by_image(pred, dataset)
    images = []
    for image in dataset.images:
        truths = [
            Instance(o["class"], Pose.from_quaternion_xyzw(o["quaternion_xyzw"], o["location"]), np.asarray(o["projected_cuboid"]))
            for o in image.annotation["objects"] if o["visibility"] > min_visibility
        ]
        estimates = predictions.get(image.key, [])
        if image.targets is not None:  # as bop_toolkit: estimates of objects not targeted are ignored
            estimates = [e for e in estimates if e.class_name in image.targets]
        images.append((truths, estimates))

    def class_model(class_name: str) -> tuple[np.ndarray, bool]:
        symmetries = dataset.symmetries.get(class_name)
        return model_points(dataset, class_name), bool(symmetries and symmetries.symmetric)

    return score_images(images, len(images), class_model, set(symmetric))


def model_points(dataset: BopDataset, class_name: str) -> np.ndarray:
    """A BOP object's model points in metres (its models/obj_*.ply is in millimetres)."""
    return load_model_points(dataset.models_info.parent, class_name) * MM


def _predictions_by_image(pred: Path, dataset: BopDataset) -> dict[str, list[Instance]]:
    by_key: dict[str, list[Instance]] = defaultdict(list)
    if Path(pred).is_dir():
        for path in sorted(Path(pred).glob("*_*.json")):
            by_key[path.stem].extend(read_instances(path))
        return by_key
    cameras = {image.key: Intrinsics.from_json(image.annotation["camera_data"]) for image in dataset.images}
    for result in read_results_csv(pred):
        key = f"{result.scene_id:06d}_{result.im_id:06d}"
        name = bop_class_name(result.obj_id)
        if key not in cameras or name not in dataset.cuboids:
            continue  # an image or object the dataset does not evaluate
        by_key[key].append(Instance(name, result.pose, projected_cuboid(dataset.cuboids[name], result.pose, cameras[key])))
    return by_key
