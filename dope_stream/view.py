"""`dope view PATH`: draw the annotations of a dataset (shards or DOPE folder) to check it by eye.

For each of the first `--max` frames it writes `KEY.png`: the image with every instance's mask
tinted (from `seg.png` when present), each annotated target's cuboid (12 edges: front face +z green,
back face red, sides blue; corner indices; the centroid) and its name and visibility. A contact sheet
(`contact_sheet.png`) puts up to `SHEET_FRAMES` overlays in one image.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .errors import DopeError
from .geometry import CUBOID_EDGES
from .outputs import output_folder
from .reader import ObjectAnnotation, decode_sample, open_dataset, sample_name

log = logging.getLogger(__name__)

SHEET_FRAMES = 16
SHEET_COLUMNS = 4
SHEET_TILE = 256  # pixels per contact-sheet tile side
MASK_ALPHA = 0.35
EDGE_COLORS_RGB = ((0, 220, 0), (230, 0, 0), (40, 90, 255))  # front face, back face, sides


def view_dataset(path: Path, out: Path, max_frames: int) -> list[Path]:
    """Write overlays of the first `max_frames` frames of `path` and a contact sheet into `out`."""
    if max_frames < 1:
        raise DopeError(f"--max must be at least 1, got {max_frames}")
    dataset = open_dataset([path])
    output_folder(out, "--out")
    overlays, written = [], []
    for index in tqdm(range(min(max_frames, len(dataset))), unit="img", desc="view"):
        sample = dataset[index]
        frame = decode_sample(sample, dataset.unit)
        overlay = draw_overlay(frame.image, frame.objects, _instance_mask(sample, frame.image.shape[:2]))
        target = out / f"{Path(frame.key).name}.png"
        cv2.imwrite(str(target), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
        written.append(target)
        if len(overlays) < SHEET_FRAMES:
            overlays.append(overlay)
    sheet = out / "contact_sheet.png"
    cv2.imwrite(str(sheet), cv2.cvtColor(contact_sheet(overlays), cv2.COLOR_RGB2BGR))
    return written + [sheet]


def draw_overlay(image: np.ndarray, objects: list[ObjectAnnotation], instance_mask: np.ndarray | None) -> np.ndarray:
    """RGB image with tinted instance masks and each object's projected cuboid."""
    overlay = image.copy()
    if instance_mask is not None:
        overlay = _tint_instances(overlay, instance_mask)
    scale = max(1, round(max(image.shape[:2]) / 400))  # line widths that stay visible on big images
    for obj in objects:
        points = [tuple(int(round(c)) for c in p) for p in obj.projected_cuboid]
        for edge_number, (a, b) in enumerate(CUBOID_EDGES):
            cv2.line(overlay, points[a], points[b], EDGE_COLORS_RGB[edge_number // 4], scale, cv2.LINE_AA)
        for corner, point in enumerate(points[:8]):
            cv2.putText(overlay, str(corner), point, cv2.FONT_HERSHEY_SIMPLEX, 0.35 * scale, (255, 255, 255), scale, cv2.LINE_AA)
        cv2.circle(overlay, points[8], 2 * scale, (255, 255, 0), -1, cv2.LINE_AA)
        label = f"{obj.name or obj.class_name} {obj.visibility:.2f}"
        cv2.putText(overlay, label, points[8], cv2.FONT_HERSHEY_SIMPLEX, 0.35 * scale, (255, 255, 0), scale, cv2.LINE_AA)
    return overlay


def contact_sheet(images: list[np.ndarray]) -> np.ndarray:
    """Images fitted into SHEET_TILE squares, SHEET_COLUMNS per row, on black."""
    rows = (len(images) + SHEET_COLUMNS - 1) // SHEET_COLUMNS
    columns = min(SHEET_COLUMNS, len(images))
    sheet = np.zeros((rows * SHEET_TILE, columns * SHEET_TILE, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        factor = SHEET_TILE / max(image.shape[:2])
        tile = cv2.resize(image, (round(image.shape[1] * factor), round(image.shape[0] * factor)), interpolation=cv2.INTER_AREA)
        top, left = (i // SHEET_COLUMNS) * SHEET_TILE, (i % SHEET_COLUMNS) * SHEET_TILE
        sheet[top : top + tile.shape[0], left : left + tile.shape[1]] = tile
    return sheet


def _instance_mask(sample: dict, image_shape: tuple[int, int]) -> np.ndarray | None:
    if "seg.png" not in sample:
        return None
    name = f"{sample_name(sample)}.seg.png"
    mask = cv2.imdecode(np.frombuffer(sample["seg.png"], np.uint8), cv2.IMREAD_UNCHANGED)
    if mask is None or mask.ndim != 2:
        raise DopeError(f"{name} cannot be decoded as a one-channel instance mask")
    if mask.shape != image_shape:
        raise DopeError(f"{name}: mask is {mask.shape[1]}x{mask.shape[0]} pixels, its image {image_shape[1]}x{image_shape[0]}")
    return mask


def _tint_instances(image: np.ndarray, instance_mask: np.ndarray) -> np.ndarray:
    """Blend a distinct colour over each instance id (golden-angle hues keep neighbours apart)."""
    ids = np.arange(int(instance_mask.max()) + 1)
    hues = ((ids * 137.508) % 180).astype(np.uint8)
    palette = cv2.cvtColor(np.stack([hues, np.full_like(hues, 200), np.full_like(hues, 255)], axis=1)[None], cv2.COLOR_HSV2RGB)[0]
    colors = palette[instance_mask].astype(np.float32)
    blended = image.astype(np.float32) * (1 - MASK_ALPHA) + colors * MASK_ALPHA
    return np.where((instance_mask > 0)[..., None], blended, image).astype(np.uint8)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="a dataset folder (shards or DOPE layout) or a shard file")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: PATH_view next to PATH)")
    parser.add_argument("--max", type=int, default=SHEET_FRAMES, dest="max_frames", help="frames to draw (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    path = Path(args.path)
    out = args.out or path.with_name(f"{path.name.removesuffix('.tar')}_view")
    written = view_dataset(path, out, args.max_frames)
    log.info("wrote %d overlays and %s", len(written) - 1, written[-1])
    return 0
