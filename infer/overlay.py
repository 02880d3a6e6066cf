"""Draw detections on an image: the 12 cuboid edges, the mesh frame's axes, the decoded keypoints."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dope_stream.exchange import write_atomically
from dope_stream.geometry import CUBOID_EDGES, Intrinsics, project_points

from .detector import Detection

FRONT_FACE = {0, 1, 2, 3}  # the +z face, drawn in another colour so the orientation is readable
EDGE_RGB = (0, 255, 0)
FRONT_RGB = (255, 200, 0)
AXIS_RGB = ((255, 0, 0), (0, 255, 0), (0, 0, 255))  # x red, y green, z blue
KEYPOINT_RGB = (255, 0, 255)
GRID_COLUMNS = 4
GRID_CELL = 320  # pixels per overlay in the grid


def draw_detections(
    image_rgb: np.ndarray, detections: list[Detection], intrinsics: Intrinsics, axis_length: float
) -> np.ndarray:
    """A copy of the image (H, W, 3) uint8 RGB with every detection drawn; axes `axis_length` metres long."""
    canvas = np.ascontiguousarray(image_rgb.copy())
    thickness = max(1, round(min(canvas.shape[:2]) / 240))
    for detection in detections:
        _draw_cuboid(canvas, detection.projected_cuboid, thickness)
        _draw_axes(canvas, detection, intrinsics, axis_length, thickness)
        for u, v in detection.keypoints[~np.isnan(detection.keypoints[:, 0])]:
            cv2.circle(canvas, _pixel(u, v), thickness + 2, KEYPOINT_RGB, -1, cv2.LINE_AA)
        u, v = detection.projected_cuboid[8]
        cv2.putText(canvas, f"{detection.class_name} {detection.score:.2f}", _pixel(u, v - 10),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, (255, 255, 255), thickness, cv2.LINE_AA)
    return canvas


def _pixel(u: float, v: float) -> tuple[int, int]:
    return int(round(u)), int(round(v))


def _draw_cuboid(canvas: np.ndarray, points: np.ndarray, thickness: int) -> None:
    for a, b in CUBOID_EDGES:
        colour = FRONT_RGB if a in FRONT_FACE and b in FRONT_FACE else EDGE_RGB
        cv2.line(canvas, _pixel(*points[a]), _pixel(*points[b]), colour, thickness, cv2.LINE_AA)


def _draw_axes(canvas: np.ndarray, detection: Detection, intrinsics: Intrinsics, length: float, thickness: int) -> None:
    """Axes of the mesh frame at its origin (skipped when any end is behind the camera)."""
    points_cam = detection.pose.apply(np.vstack([np.zeros(3), np.eye(3) * length]))
    if np.any(points_cam[:, 2] <= 0):
        return
    origin, *ends = project_points(points_cam, intrinsics)
    for end, colour in zip(ends, AXIS_RGB):
        cv2.line(canvas, _pixel(*origin), _pixel(*end), colour, thickness, cv2.LINE_AA)


def write_overlay_grid(overlays: list[Path], path: Path, count: int = 12) -> Path | None:
    """A GRID_COLUMNS-wide grid of the first `count` overlays, each scaled to GRID_CELL pixels."""
    tiles = []
    for overlay in overlays[:count]:
        image = cv2.imread(str(overlay))
        scale = GRID_CELL / max(image.shape[:2])
        tile = np.zeros((GRID_CELL, GRID_CELL, 3), np.uint8)
        resized = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        tile[: resized.shape[0], : resized.shape[1]] = resized
        tiles.append(tile)
    if not tiles:
        return None
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % GRID_COLUMNS)
    rows = [np.hstack(tiles[i : i + GRID_COLUMNS]) for i in range(0, len(tiles), GRID_COLUMNS)]
    return write_atomically(path, lambda tmp: cv2.imwrite(str(tmp), np.vstack(rows)))
