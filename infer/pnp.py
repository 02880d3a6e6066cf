"""2D keypoints of one object -> its 6-DoF pose (OpenCV PnP against the cuboid's 9 points).

SQPnP (globally optimal, any number of points >= 3) solves every subset of the detected keypoints
(centroid included) that leaves out at most two of them; the pose that explains the most keypoints
within the inlier threshold wins (RANSAC with exhaustive, hence deterministic, hypotheses: with 9
points that is cheaper and surer than random sampling), and Levenberg-Marquardt refines it on its
inliers. Solutions behind the camera or with a large mean reprojection error are rejected.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import cv2
import numpy as np

from dope_stream.geometry import Cuboid, Intrinsics, Pose


@dataclass(frozen=True)
class PnPSettings:
    min_points: int = 6  # fewer keypoints than this: no pose
    inlier_threshold: float = 8.0  # pixels; keypoints reprojecting further are outliers
    max_outliers: int = 2  # most keypoints the consensus search may leave out
    max_reprojection_error: float = 10.0  # pixels; mean over inliers above this: rejected


@dataclass(frozen=True)
class PoseSolution:
    """The pose of the mesh's own frame, the cuboid's pose, and how well it fits."""

    pose: Pose  # model (mesh) frame -> camera
    cuboid_pose: Pose  # cuboid frame (origin at the AABB centre) -> camera
    inliers: np.ndarray  # (9,) bool: keypoints used by the final solution
    reprojection_error: float  # mean pixel error over the inliers


def solve_pose(
    uv: np.ndarray, cuboid: Cuboid, intrinsics: Intrinsics, settings: PnPSettings = PnPSettings()
) -> PoseSolution | None:
    """Pose from (9, 2) keypoints (NaN where missing) in the image of `intrinsics`; None if implausible."""
    object_points = cuboid.keypoints_centered()
    found = np.flatnonzero(~np.isnan(uv[:, 0]))
    if len(found) < settings.min_points:
        return None
    camera = intrinsics.matrix
    consensus = _consensus(object_points, uv, found, camera, settings)
    if consensus is None:
        return None
    inliers, (rvec, tvec) = consensus
    rvec, tvec = cv2.solvePnPRefineLM(object_points[inliers], uv[inliers], camera, None, rvec, tvec)
    cuboid_pose = Pose(cv2.Rodrigues(rvec)[0], tvec.reshape(3))
    mean_error = float(_reprojection_errors(object_points[inliers], uv[inliers], rvec, tvec, camera).mean())
    if mean_error > settings.max_reprojection_error or not _in_front(cuboid_pose, object_points):
        return None
    mask = np.zeros(len(uv), dtype=bool)
    mask[inliers] = True
    return PoseSolution(cuboid_pose.moved_origin(-np.asarray(cuboid.center)), cuboid_pose, mask, mean_error)


def _consensus(
    object_points: np.ndarray, uv: np.ndarray, found: np.ndarray, camera: np.ndarray, settings: PnPSettings
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]] | None:
    """The most keypoints one pose explains within the inlier threshold, and that pose.

    Hypotheses are the SQPnP poses of every subset of the found keypoints that leaves out at most
    `max_outliers` of them (at most 46 solves for 9 points), fewest left out first, so the usual
    case without outliers costs one solve. Once a level has a pose explaining all the points it
    kept, leaving out more cannot explain more (that set was already tried), so the search stops.
    """
    best: tuple[tuple[int, float], np.ndarray, tuple[np.ndarray, np.ndarray]] | None = None
    most_left_out = min(settings.max_outliers, len(found) - settings.min_points)
    for left_out in range(most_left_out + 1):
        for subset in itertools.combinations(found, len(found) - left_out):
            subset = np.asarray(subset)
            solved = _sqpnp(object_points[subset], uv[subset], camera)
            if solved is None:
                continue
            errors = _reprojection_errors(object_points[found], uv[found], *solved, camera)
            within = errors <= settings.inlier_threshold
            if not within.any():
                continue
            rank = (int(within.sum()), -float(errors[within].mean()))
            if best is None or rank > best[0]:
                best = (rank, found[within], solved)
        if best is not None and best[0][0] >= len(found) - left_out:
            break
    if best is None or len(best[1]) < settings.min_points:
        return None
    return best[1], best[2]


def _sqpnp(object_points: np.ndarray, image_points: np.ndarray, camera: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(rvec, tvec) of the cuboid frame, or None on degenerate input."""
    try:
        ok, rvec, tvec = cv2.solvePnP(
            object_points.astype(np.float64), image_points.astype(np.float64), camera, None, flags=cv2.SOLVEPNP_SQPNP
        )
    except cv2.error:  # SQPnP asserts on keypoints that (nearly) coincide, as a confused network may give
        return None
    return (rvec, tvec) if ok else None


def _reprojection_errors(
    object_points: np.ndarray, uv: np.ndarray, rvec: np.ndarray, tvec: np.ndarray, camera: np.ndarray
) -> np.ndarray:
    """(9,) pixel distance between each keypoint and its reprojection (NaN where missing)."""
    projected, _ = cv2.projectPoints(object_points, rvec, tvec, camera, None)
    return np.linalg.norm(projected.reshape(-1, 2) - uv, axis=1)


def _in_front(cuboid_pose: Pose, object_points: np.ndarray) -> bool:
    """Every cuboid keypoint lies in front of the camera."""
    return bool(np.all(cuboid_pose.apply(object_points)[:, 2] > 0))
