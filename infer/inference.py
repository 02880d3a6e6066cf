"""`dope infer` as a library function: images, a folder or a video -> JSON + overlays per frame.

Per image `STEM.jpg` the output folder gets `STEM.json` (camera_data + objects: class, location and
quaternion_xyzw of the mesh frame, projected_cuboid reprojected from the pose, decoded keypoints
with their belief scores, score) and `STEM.png` (the overlay). A video `STEM.mp4` gives
`STEM_000000.json` ... per frame and `STEM_overlay.mp4`. Files are written atomically and images
whose JSON exists are skipped (`resume`), so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml
from tqdm import tqdm

from dope_stream.bop import is_bop
from dope_stream.config import check_focal_lengths
from dope_stream.exchange import write_atomically
from dope_stream.errors import DopeError
from dope_stream.geometry import Intrinsics
from dope_stream.outputs import output_folder
from dope_stream.reader import camera_intrinsics, parse_json

from trainer.decode import DecodeSettings

from .config import InferConfig
from .detector import Detection, Detector, RefineSettings, TorchBackend
from .export import export_onnx
from .images import list_images, read_image
from .loading import OnnxBackend, check_class, load_torch_network
from .overlay import draw_detections
from .pnp import PnPSettings

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


@dataclass(frozen=True)
class InferenceSummary:
    frames: int
    skipped: int
    detections: int
    seconds: float


def build_detector(config: InferConfig) -> Detector:
    """The detector the options describe (torch or onnxruntime backend)."""
    if config.backend == "onnx":
        backend = OnnxBackend(_onnx_model(config))
        info = backend.info
        check_class(config, info)
    else:
        model, info = load_torch_network(config)
        backend = TorchBackend(model, config.device, offsets=info.offset_scale is not None)
    refine_size = (info.refine_object_size or 0) if config.refine_object_size is None else config.refine_object_size
    # The refinement is what merges the levels' detections of one object into one pose (measured only
    # with it): a one-pass model keeps one level.
    pyramid = tuple(config.pyramid) if config.pyramid and refine_size > 0 else ()
    return Detector(
        backend, info,
        DecodeSettings(peak_threshold=config.peak_threshold, centroid_threshold=config.centroid_threshold,
                       subpixel=config.subpixel, snap_radius=config.snap_radius),
        PnPSettings(min_points=config.min_keypoints, max_reprojection_error=config.max_reprojection_error),
        config.input_height,
        RefineSettings(object_size=refine_size, iterations=config.refine_iterations),
        pyramid, config.min_score,
    )


def _onnx_model(config: InferConfig) -> Path:
    """The .onnx file to run: --weights itself, or a dynamic-size export of the checkpoint into --out."""
    if config.weights.suffix.lower() == ".onnx":
        if not config.weights.is_file():
            raise DopeError(f"--weights {config.weights}: file does not exist")
        return config.weights
    model, info = load_torch_network(config)
    path = config.out / f"{config.weights.stem}.onnx"
    log.info("exporting %s to %s for onnxruntime", config.weights, path)
    return export_onnx(model, info, path, width=320, height=320, dynamic=True)


def run_inference(config: InferConfig) -> InferenceSummary:
    images_folder = config.images if config.images.is_dir() else config.images.parent
    if config.out.resolve() == images_folder.resolve():
        raise DopeError(f"--out {config.out}: must differ from the images' folder (the JSON files would overwrite annotations)")
    if config.bop_csv is not None and not is_bop(config.images):
        raise DopeError(f"option 'bop_csv': --images {config.images} is not a BOP dataset (no scene_gt.json)")
    output_folder(config.out, "--out")
    detector = build_detector(config)
    camera = read_camera_yaml(config.camera) if config.camera is not None else None
    if config.images.is_file() and config.images.suffix.lower() in VIDEO_SUFFIXES:
        return _run_video(detector, config, camera)
    if is_bop(config.images):
        from .bop_io import infer_bop

        start = time.perf_counter()
        done, skipped, found = infer_bop(
            detector, config, lambda stem, image, detections, intrinsics: _save_frame(config.out, stem, image, detections, intrinsics, detector)
        )
        return InferenceSummary(done, skipped, found, time.perf_counter() - start)
    return _run_images(detector, config, camera)


def read_camera_yaml(path: Path) -> Intrinsics:
    """ROS camera_info YAML (image_width, image_height, camera_matrix: {data: [9 numbers]})."""
    if not path.is_file():
        raise DopeError(f"--camera {path}: file does not exist")
    try:
        data = yaml.safe_load(path.read_text())
        k = [float(v) for v in data["camera_matrix"]["data"]]
        width, height = int(data["image_width"]), int(data["image_height"])
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as err:
        raise DopeError(f"--camera {path}: expected ROS camera_info YAML with image_width, image_height and "
                        f"camera_matrix.data ({type(err).__name__}: {err})") from None
    if len(k) != 9:
        raise DopeError(f"--camera {path}: camera_matrix.data must hold 9 numbers, got {len(k)}")
    try:
        check_focal_lengths((k[0], k[4], k[2], k[5]))
    except ValueError as err:
        raise DopeError(f"--camera {path}: camera_matrix: {err}") from None
    return Intrinsics(k[0], k[4], k[2], k[5], width, height)


def intrinsics_for(image_path: Path, width: int, height: int, config: InferConfig, camera: Intrinsics | None) -> Intrinsics:
    """The camera of one image: --intrinsics, --camera, or the camera_data of STEM.json beside it."""
    if config.intrinsics is not None:
        return Intrinsics(*config.intrinsics, width, height)
    if camera is not None:
        return camera if (camera.width, camera.height) == (width, height) else camera.scaled(width, height)
    beside = image_path.with_suffix(".json")
    if beside.is_file():
        found = camera_intrinsics(parse_json(beside.read_bytes(), str(beside)).get("camera_data", {}), str(beside))
        if found is not None:
            return found if (found.width, found.height) == (width, height) else found.scaled(width, height)
    raise DopeError(
        f"--images {image_path}: no camera intrinsics; give --intrinsics fx,fy,cx,cy or --camera camera.yaml "
        f"(or put {beside.name} with camera_data beside the image)"
    )


def prediction_json(detections: list[Detection], intrinsics: Intrinsics) -> dict:
    # "units" declares metres: a far false detection must not make the file read as centimetres.
    return {"units": "m", "camera_data": intrinsics.to_json(), "objects": [d.to_json(i) for i, d in enumerate(detections)]}


def _save_frame(out: Path, stem: str, image_rgb: np.ndarray, detections: list[Detection], intrinsics: Intrinsics,
                detector: Detector, png: bool = True) -> np.ndarray:
    overlay = draw_detections(image_rgb, detections, intrinsics, 0.5 * max(detector.info.cuboid.extent))
    if png:
        write_atomically(out / f"{stem}.png", lambda p: cv2.imwrite(str(p), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)))
    # JSON last: its presence marks the frame as done for --resume.
    write_atomically(out / f"{stem}.json", lambda p: p.write_text(json.dumps(prediction_json(detections, intrinsics), indent=1)))
    return overlay


def _run_images(detector: Detector, config: InferConfig, camera: Intrinsics | None) -> InferenceSummary:
    images = list_images(config.images)
    start, done, skipped, found = time.perf_counter(), 0, 0, 0
    for path in tqdm(images, desc="infer", unit="img", disable=len(images) < 2):
        if config.resume and (config.out / f"{path.stem}.json").is_file():
            skipped += 1
            continue
        image = read_image(path)
        intrinsics = intrinsics_for(path, image.shape[1], image.shape[0], config, camera)
        detections = detector.detect(image, intrinsics)
        _save_frame(config.out, path.stem, image, detections, intrinsics, detector)
        done, found = done + 1, found + len(detections)
    summary = InferenceSummary(done, skipped, found, time.perf_counter() - start)
    log.info("%d images (%d already done), %d detections, written to %s", done, skipped, found, config.out)
    return summary


def _run_video(detector: Detector, config: InferConfig, camera: Intrinsics | None) -> InferenceSummary:
    capture = cv2.VideoCapture(str(config.images))
    if not capture.isOpened():
        raise DopeError(f"--images {config.images}: cannot be opened as a video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    stem = config.images.stem
    video_path = config.out / f"{stem}_overlay.mp4"
    tmp = video_path.with_name(f".{stem}_overlay.tmp.mp4")
    writer, frames, found, start = None, 0, 0, time.perf_counter()
    with tqdm(total=total, desc="infer", unit="frame") as progress:
        while True:
            ok, frame_bgr = capture.read()
            if not ok:
                break
            image = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
            intrinsics = intrinsics_for(config.images, image.shape[1], image.shape[0], config, camera)
            detections = detector.detect(image, intrinsics)
            overlay = _save_frame(config.out, f"{stem}_{frames:06d}", image, detections, intrinsics, detector, png=False)
            if writer is None:
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (image.shape[1], image.shape[0]))
            writer.write(cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
            frames, found = frames + 1, found + len(detections)
            progress.update(1)
    capture.release()
    if writer is None:
        raise DopeError(f"--images {config.images}: video has no readable frames")
    writer.release()
    os.replace(tmp, video_path)
    log.info("%d frames, %d detections, overlaid video %s", frames, found, video_path)
    return InferenceSummary(frames, 0, found, time.perf_counter() - start)
