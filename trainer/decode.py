"""Belief/affinity maps -> 2D keypoints grouped into object instances.

Input maps are one image's network output at 1/stride resolution: belief (9, h, w) with one channel
per DOPE keypoint (8 corners, then the centroid) and affinity (16, h, w) holding, for corner k in
channels (2k, 2k+1), the (x, y) unit vector from that corner towards its object's centroid.

Steps (all vectorised over peaks): smooth each belief map, keep local maxima above a threshold,
refine each to sub-pixel (by default the vertex of the log-parabola through the raw map's three cells
across the peak on each axis; `subpixel="window"`: the belief-weighted mean in a window sized to the peak),
convert to pixels with `geometry.map_to_pixel` (the inverse of the training targets' `pixel_to_map`,
in the convention stored with the model), then
attach every corner peak to the nearest centroid whose direction agrees with the predicted affinity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from dope_stream.geometry import DEFAULT_MAP_CONVENTION, NUM_AFFINITY, NUM_KEYPOINTS, map_to_pixel, pixel_to_map

CENTROID = NUM_KEYPOINTS - 1  # belief channel of the centroid
RING_STOP = 0.1  # the refinement window stops growing at a ring below this share of the peak


@dataclass(frozen=True)
class DecodeSettings:
    """Peak finding and grouping parameters (map cells unless stated)."""

    smooth_sigma: float = 1.0  # Gaussian smoothing before peak finding; 0 disables it
    peak_threshold: float = 0.05  # minimum raw belief at a corner peak
    centroid_threshold: float = 0.1  # minimum raw belief at a centroid peak that seeds an object
    # Sub-pixel step. The network's corner blobs are not symmetric: they lean towards the object, and
    # a window's mean follows that lean (corners too close together, so poses too far: README "Real
    # photos", session 7); the vertex through the three cells across the peak sees only its top.
    subpixel: Literal["parabola", "window"] = "parabola"
    window_radius: int = 5  # subpixel "window": largest window, (2r+1) x (2r+1) cells (the reference's 11 x 11)
    affinity_tolerance: float = 0.5  # max |predicted unit vector - true direction| to join an object
    snap_radius: float = 3.0  # offset networks: a corner peak this close to a regressed corner replaces it


@dataclass(frozen=True)
class Peaks:
    """Peaks of one belief channel: (N, 2) pixel coordinates (u, v) and (N,) raw belief scores."""

    uv: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class ObjectKeypoints:
    """One object's 2D keypoints in DOPE order: (9, 2) pixels (NaN where not found), (9,) scores."""

    uv: np.ndarray
    scores: np.ndarray

    @property
    def found(self) -> np.ndarray:
        """(9,) bool: which keypoints were detected."""
        return ~np.isnan(self.uv[:, 0])


def find_peaks(
    belief: np.ndarray, stride: int, settings: DecodeSettings, convention: str = DEFAULT_MAP_CONVENTION
) -> list[Peaks]:
    """Local maxima of each belief channel, refined to sub-pixel and converted to pixels.

    Peaks on the map's outer ring count too (a corner a few pixels from the image border peaks
    there); a ring peak is kept only if its refined position lies inside the image, because a
    keypoint just outside the image leaves the tail of its Gaussian on the ring.
    """
    belief = np.asarray(belief, dtype=np.float32)
    smoothed = (
        ndimage.gaussian_filter(belief, sigma=settings.smooth_sigma, axes=(1, 2), mode="constant")
        if settings.smooth_sigma > 0
        else belief
    )
    is_max = smoothed == ndimage.maximum_filter(smoothed, size=(1, 3, 3), mode="constant", cval=-np.inf)
    # `> 0` as well: a flat empty map is a local maximum everywhere, with nothing to weigh.
    channel, row, col = np.nonzero(is_max & (belief >= settings.peak_threshold) & (belief > 0))
    if settings.subpixel == "parabola":
        xy = np.stack([_log_parabola_vertex(belief[channel, row], col),
                       _log_parabola_vertex(belief[channel, :, col], row)], axis=1)
    else:
        xy = _refine_in_window(belief, channel, row, col, settings)
    # The image's outer pixel edges in map coordinates (x, y).
    low = pixel_to_map(-0.5, stride, convention)
    high = pixel_to_map(np.array(belief.shape[:0:-1]) * stride - 0.5, stride, convention)
    inside = np.all((xy >= low) & (xy <= high), axis=1)
    channel, row, col, xy = channel[inside], row[inside], col[inside], xy[inside]
    uv = map_to_pixel(xy, stride, convention)
    scores = belief[channel, row, col]
    return [Peaks(uv[channel == c], scores[channel == c]) for c in range(belief.shape[0])]


def _refine_in_window(belief: np.ndarray, channel: np.ndarray, row: np.ndarray, col: np.ndarray, settings: DecodeSettings) -> np.ndarray:
    """(N, 2) map coordinates (x, y) of the peaks at integer cells (row, col).

    A belief-weighted mean over a window sized to each peak: the window grows ring by ring
    (up to `window_radius`) until its ring falls below RING_STOP of the peak, or rises again (another
    peak), and the weights are the values minus that ring's maximum. The blob above that level lies
    inside the window and is symmetric about the true centre, so neither a wide peak nor a background
    level pulls the mean to the integer cell. Along an axis where the window crosses the map's
    border the blob is cut, so there the centre comes from the vertex of the parabola through the
    log of three cells (exact for a Gaussian).
    """
    radius = settings.window_radius
    offsets = np.arange(-radius, radius + 1)
    rows = row[:, None, None] + offsets[None, :, None]  # (N, k, 1)
    cols = col[:, None, None] + offsets[None, None, :]  # (N, 1, k)
    height, width = belief.shape[1:]
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    values = np.where(inside, belief[channel[:, None, None], rows.clip(0, height - 1), cols.clip(0, width - 1)], -np.inf)
    ring_of_cell = np.maximum(np.abs(offsets)[:, None], np.abs(offsets)[None, :])  # (k, k) Chebyshev distance
    ring_max = np.stack([values[:, ring_of_cell == r].max(axis=1) for r in range(radius + 1)], axis=1)  # (N, r+1)
    peak = belief[channel, row, col]
    low_enough = ring_max[:, 1:] <= RING_STOP * peak[:, None]
    rising = np.concatenate([np.zeros((len(peak), 1), bool), ring_max[:, 2:] > ring_max[:, 1:-1]], axis=1)
    # First ring that is low enough (use it), or that rises again (use the one before); else the last.
    stop = np.where(low_enough.any(axis=1), low_enough.argmax(axis=1) + 1, radius)
    stop = np.minimum(stop, np.where(rising.any(axis=1), rising.argmax(axis=1), radius))
    stop = np.maximum(stop, 1)
    floor = np.maximum(ring_max[np.arange(len(peak)), stop], settings.peak_threshold)
    in_window = ring_of_cell[None] <= stop[:, None, None]
    weights = np.where(in_window & inside, np.maximum(values - floor[:, None, None], 0.0), 0.0)
    total = np.maximum(weights.sum(axis=(1, 2)), 1e-12)
    x = (weights * cols).sum(axis=(1, 2)) / total
    y = (weights * rows).sum(axis=(1, 2)) / total
    x = np.where((col - stop < 0) | (col + stop >= width), _log_parabola_vertex(belief[channel, row], col), x)
    y = np.where((row - stop < 0) | (row + stop >= height), _log_parabola_vertex(belief[channel, :, col], row), y)
    return np.stack([x, y], axis=1).astype(np.float64)


def _log_parabola_vertex(lines: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """(N,) sub-cell position of the peak at `centre` of each (N, L) line: the vertex of the parabola
    through the log of three neighbouring cells (at the line's ends, the three innermost)."""
    middle = np.clip(centre, 1, lines.shape[1] - 2)
    picked = np.stack([lines[np.arange(len(centre)), middle + d] for d in (-1, 0, 1)], axis=1)
    before, at, after = np.log(np.maximum(picked, 1e-6)).T
    curvature = before - 2 * at + after
    vertex = np.where(curvature < -1e-9, 0.5 * (before - after) / np.minimum(curvature, -1e-9), 0.0)
    # A flat or convex triple has no vertex: keep the peak cell itself.
    return np.where(curvature < -1e-9, middle + vertex, centre).astype(np.float64)


def sample_affinity(affinity: np.ndarray, uv: np.ndarray, stride: int, convention: str = DEFAULT_MAP_CONVENTION) -> np.ndarray:
    """(N, 8, 2): the 8 corners' affinity vectors at pixel positions uv (N, 2), from the nearest cell."""
    h, w = affinity.shape[1:]
    cells = np.rint(pixel_to_map(uv, stride, convention)).astype(int)
    col = cells[:, 0].clip(0, w - 1)
    row = cells[:, 1].clip(0, h - 1)
    return affinity[:, row, col].T.reshape(-1, NUM_AFFINITY // 2, 2)


def group_keypoints(
    peaks: list[Peaks], affinity: np.ndarray, stride: int, settings: DecodeSettings,
    convention: str = DEFAULT_MAP_CONVENTION,
) -> list[ObjectKeypoints]:
    """Assign corner peaks to centroid peaks by affinity; one peak per corner per object.

    A corner peak joins the nearest centroid whose direction from the corner agrees with the
    affinity vector predicted at the corner; if several peaks of one corner pick the same object,
    the one with the highest belief wins.
    """
    centroids = peaks[CENTROID]
    seeds = centroids.scores >= settings.centroid_threshold
    centre_uv, centre_scores = centroids.uv[seeds], centroids.scores[seeds]
    n_objects = len(centre_uv)
    uv = np.full((n_objects, NUM_KEYPOINTS, 2), np.nan)
    scores = np.zeros((n_objects, NUM_KEYPOINTS))
    uv[:, CENTROID], scores[:, CENTROID] = centre_uv, centre_scores
    if n_objects == 0:
        return []
    for corner in range(CENTROID):
        corner_peaks = peaks[corner]
        if len(corner_peaks.scores) == 0:
            continue
        owner = _owner_of_each_peak(corner_peaks.uv, corner, centre_uv, affinity, stride, settings, convention)
        for obj in range(n_objects):
            mine = np.flatnonzero(owner == obj)
            if len(mine):
                best = mine[np.argmax(corner_peaks.scores[mine])]
                uv[obj, corner], scores[obj, corner] = corner_peaks.uv[best], corner_peaks.scores[best]
    return [ObjectKeypoints(uv[i], scores[i]) for i in range(n_objects)]


def _owner_of_each_peak(
    corner_uv: np.ndarray, corner: int, centre_uv: np.ndarray, affinity: np.ndarray, stride: int,
    settings: DecodeSettings, convention: str,
) -> np.ndarray:
    """(N,) index of the centroid each corner peak belongs to, or -1 if none agrees."""
    predicted = sample_affinity(affinity, corner_uv, stride, convention)[:, corner]  # (N, 2)
    predicted = predicted / np.maximum(np.linalg.norm(predicted, axis=1, keepdims=True), 1e-6)
    to_centre = centre_uv[None, :, :] - corner_uv[:, None, :]  # (N, M, 2)
    distance = np.linalg.norm(to_centre, axis=2)
    direction = to_centre / np.maximum(distance[..., None], 1e-6)
    disagreement = np.linalg.norm(direction - predicted[:, None, :], axis=2)
    distance = np.where(disagreement < settings.affinity_tolerance, distance, np.inf)
    owner = np.argmin(distance, axis=1)
    return np.where(np.isfinite(distance[np.arange(len(owner)), owner]), owner, -1)


def decode(
    belief: np.ndarray, affinity: np.ndarray, stride: int, settings: DecodeSettings,
    convention: str = DEFAULT_MAP_CONVENTION,
) -> list[ObjectKeypoints]:
    """One image's maps -> its objects' 2D keypoints (pixels of the network input); `convention`
    is the one the network's targets used (`dope_stream.geometry.map_to_pixel`)."""
    peaks = find_peaks(belief, stride, settings, convention)
    return group_keypoints(peaks, affinity, stride, settings, convention)


def decode_offsets(
    belief: np.ndarray, offsets: np.ndarray, stride: int, settings: DecodeSettings, scale: float,
    convention: str = DEFAULT_MAP_CONVENTION,
) -> list[ObjectKeypoints]:
    """Maps of an offset network (`trainer.networks.CentreNetwork`) -> objects' 2D keypoints.

    Each centroid peak seeds an object whose 8 corners are the centroid plus the offsets read
    (bilinearly) at it: the corners' identities come from one prediction over the whole object. A
    corner's belief peak within `snap_radius` cells of its regressed position then replaces it
    (peaks are sub-pixel precise, offsets less so); a corner without one keeps the regressed position
    and the belief found there as its score."""
    peaks = find_peaks(belief, stride, settings, convention)
    centroids = peaks[CENTROID]
    seeds = centroids.scores >= settings.centroid_threshold
    objects = []
    for centre_uv, centre_score in zip(centroids.uv[seeds], centroids.scores[seeds]):
        centre = pixel_to_map(centre_uv, stride, convention)
        regressed = centre + scale * _bilinear(offsets, centre).reshape(8, 2)  # map coordinates
        uv = np.vstack([map_to_pixel(regressed, stride, convention), centre_uv[None]])
        scores = np.append(_nearest(belief[:CENTROID], regressed), centre_score)
        for corner in range(CENTROID):
            candidates = peaks[corner]
            if len(candidates.scores):
                distance = np.linalg.norm(candidates.uv - uv[corner], axis=1)
                nearest = int(np.argmin(distance))
                if distance[nearest] <= settings.snap_radius * stride:
                    uv[corner], scores[corner] = candidates.uv[nearest], candidates.scores[nearest]
        objects.append(ObjectKeypoints(uv, scores))
    return objects


def _bilinear(maps: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(C,) values of (C, H, W) maps at map coordinate (x, y), clamped to the map."""
    height, width = maps.shape[1:]
    x, y = float(np.clip(xy[0], 0, width - 1)), float(np.clip(xy[1], 0, height - 1))
    x0, y0 = min(int(x), width - 2) if width > 1 else 0, min(int(y), height - 2) if height > 1 else 0
    x1, y1 = min(x0 + 1, width - 1), min(y0 + 1, height - 1)
    fx, fy = x - x0, y - y0
    top = maps[:, y0, x0] * (1 - fx) + maps[:, y0, x1] * fx
    bottom = maps[:, y1, x0] * (1 - fx) + maps[:, y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _nearest(maps: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(K,) value of map k at its own point xy[k] (nearest cell, clamped to the map)."""
    height, width = maps.shape[1:]
    cols = np.rint(xy[:, 0]).astype(int).clip(0, width - 1)
    rows = np.rint(xy[:, 1]).astype(int).clip(0, height - 1)
    return maps[np.arange(len(xy)), rows, cols]


def decode_network_maps(belief: np.ndarray, affinity: np.ndarray, offsets: np.ndarray | None, stride: int,
                        settings: DecodeSettings, offset_scale: float | None,
                        convention: str = DEFAULT_MAP_CONVENTION) -> list[ObjectKeypoints]:
    """The one decoder validation and `dope infer` run on one image's maps: by corner offsets for an
    offset network (`offset_scale` set), by affinity grouping otherwise; `convention` as the targets
    were placed (stored with the model)."""
    if offset_scale is not None:
        return decode_offsets(belief, offsets, stride, settings, offset_scale, convention)
    return decode(belief, affinity, stride, settings, convention)
