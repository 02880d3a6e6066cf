"""Training targets at the output stride: belief Gaussians and corner -> centroid affinity fields.

Keypoints are placed on the map with `dope_stream.geometry.pixel_to_map`, the convention the
decoder inverts with `map_to_pixel`: a Gaussian centred at that continuous coordinate decodes (by
a symmetric weighted mean) to the keypoint's pixel without bias.
"""

from __future__ import annotations

import numpy as np

from dope_stream.geometry import DEFAULT_MAP_CONVENTION, NUM_AFFINITY, NUM_KEYPOINTS, pixel_to_map


def map_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre coordinates (x, y) of an (height, width) map, each (height, width)."""
    return np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))


def belief_maps(
    keypoints_px: np.ndarray, map_size: tuple[int, int], stride: int, sigma: float, convention: str = DEFAULT_MAP_CONVENTION
) -> np.ndarray:
    """(N, 9, 2) pixel keypoints of N instances -> (9, H, W) float32 Gaussians, max over instances.

    `sigma` is in map cells. Keypoints outside the image still shape the maps near the border.
    """
    height, width = map_size
    if len(keypoints_px) == 0:
        return np.zeros((NUM_KEYPOINTS, height, width), np.float32)
    centres = pixel_to_map(keypoints_px, stride, convention).astype(np.float32)  # (N, 9, 2)
    xs, ys = map_grid(height, width)
    dx = xs[None, None] - centres[..., 0, None, None]  # (N, 9, H, W)
    dy = ys[None, None] - centres[..., 1, None, None]
    return np.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma)).max(axis=0)


def affinity_maps(
    keypoints_px: np.ndarray, map_size: tuple[int, int], stride: int, radius: float, convention: str = DEFAULT_MAP_CONVENTION
) -> np.ndarray:
    """(N, 9, 2) pixel keypoints -> (16, H, W) float32: within `radius` cells of corner k, channels
    (2k, 2k+1) hold the unit vector from corner k to its instance's centroid; where instances
    overlap, the nearest corner wins."""
    height, width = map_size
    fields = np.zeros((NUM_AFFINITY, height, width), np.float32)
    if len(keypoints_px) == 0:
        return fields
    points = pixel_to_map(keypoints_px, stride, convention).astype(np.float32)
    corners, centroids = points[:, :8], points[:, 8:9]  # (N, 8, 2), (N, 1, 2)
    direction = centroids - corners
    direction /= np.maximum(np.linalg.norm(direction, axis=-1, keepdims=True), 1e-6)  # (N, 8, 2)
    xs, ys = map_grid(height, width)
    distance = np.hypot(xs[None, None] - corners[..., 0, None, None], ys[None, None] - corners[..., 1, None, None])
    nearest = distance.argmin(axis=0)  # (8, H, W): which instance owns each cell
    inside = np.take_along_axis(distance, nearest[None], axis=0)[0] <= radius  # (8, H, W)
    corner_index = np.arange(8)[:, None, None]
    vectors = direction[nearest, corner_index]  # (8, H, W, 2)
    vectors *= inside[..., None]
    fields[0::2], fields[1::2] = vectors[..., 0], vectors[..., 1]
    return fields


def centre_offset_maps(keypoints_px: np.ndarray, map_size: tuple[int, int], stride: int, radius: float,
                       scale: float, convention: str = DEFAULT_MAP_CONVENTION) -> tuple[np.ndarray, np.ndarray]:
    """(N, 9, 2) pixel keypoints -> corner offsets (16, H, W) and their weight (1, H, W).

    Within `radius` cells of an instance's centroid (the nearest centroid where instances crowd),
    channels (2k, 2k+1) hold corner k's map position minus the cell's, divided by `scale`; the
    weight is 1 there and 0 elsewhere (the offsets are only read at a centroid)."""
    height, width = map_size
    offsets = np.zeros((2 * 8, height, width), np.float32)
    weight = np.zeros((1, height, width), np.float32)
    if len(keypoints_px) == 0:
        return offsets, weight
    points = pixel_to_map(keypoints_px, stride, convention).astype(np.float32)  # (N, 9, 2)
    xs, ys = map_grid(height, width)
    distance = np.hypot(xs[None] - points[:, 8, 0, None, None], ys[None] - points[:, 8, 1, None, None])  # (N, H, W)
    owner = distance.argmin(axis=0)
    inside = np.take_along_axis(distance, owner[None], axis=0)[0] <= radius
    corners = points[owner, :8]  # (H, W, 8, 2)
    cells = np.stack([xs, ys], axis=-1)[:, :, None, :]  # (H, W, 1, 2)
    offsets[:] = ((corners - cells) / scale).reshape(height, width, 16).transpose(2, 0, 1) * inside
    weight[0] = inside
    return offsets, weight
