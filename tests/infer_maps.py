"""Ground-truth belief/affinity maps drawn from known keypoints, for the inference tests.

Drawn independently of the trainer's target builder: a Gaussian per keypoint centred at the
continuous map coordinate `pixel_to_map(uv)`, max over instances, and around each corner the unit
vector pointing to its centroid.
"""

from __future__ import annotations

import numpy as np

from dope_stream.geometry import pixel_to_map


def draw_maps(
    instances: list[np.ndarray], width: int, height: int, stride: int = 8, sigma: float = 1.0, radius: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """instances: (9, 2) pixel keypoints each (NaN rows are left out) -> belief (9,h,w), affinity (16,h,w)."""
    h, w = height // stride, width // stride
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    belief = np.zeros((9, h, w))
    affinity = np.zeros((16, h, w))
    for uv in instances:
        xy = pixel_to_map(uv, stride)
        for k in range(9):
            if np.isnan(xy[k, 0]):
                continue
            d2 = (xs - xy[k, 0]) ** 2 + (ys - xy[k, 1]) ** 2
            belief[k] = np.maximum(belief[k], np.exp(-d2 / (2 * sigma**2)))
            if k < 8:
                direction = (uv[8] - uv[k]) / np.linalg.norm(uv[8] - uv[k])
                near = d2 <= radius**2
                affinity[2 * k][near], affinity[2 * k + 1][near] = direction
    return belief.astype(np.float32), affinity.astype(np.float32)
