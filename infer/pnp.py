"""2D keypoints of one object -> its 6-DoF pose (OpenCV PnP against the cuboid's 9 points).

SQPnP (globally optimal, any number of points >= 3) gives the initial pose from every detected
keypoint, centroid included; the worst-reprojected point is dropped while it exceeds the inlier
threshold and enough points remain (a deterministic outlier rejection that suits 9 points better
than random sampling), and Levenberg-Marquardt refines the result on the inliers. Solutions behind
the camera or with a large reprojection error are rejected.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dope_stream.geometry import Cuboid, Intrinsics, Pose


@dataclass(frozen=True)
class PnPSettings:
    min_points: int = 6  # fewer keypoints than this: no pose
    inlier_threshold: float = 8.0  # pixels; points reprojecting further are dropped (worst first)
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
    inliers = ~np.isnan(uv[:, 0])
    if inliers.sum() < settings.min_points:
        return None
    camera = intrinsics.matrix
    while True:
        solved = _sqpnp(object_points[inliers], uv[inliers], camera)
        if solved is None:
            return None
        rvec, tvec = solved
        errors = _reprojection_errors(object_points, uv, rvec, tvec, camera)
        worst = np.flatnonzero(inliers)[np.argmax(errors[inliers])]
        if errors[worst] <= settings.inlier_threshold or inliers.sum() <= settings.min_points:
            break
        inliers[worst] = False
    rvec, tvec = cv2.solvePnPRefineLM(object_points[inliers], uv[inliers], camera, None, rvec, tvec)
    errors = _reprojection_errors(object_points, uv, rvec, tvec, camera)
    cuboid_pose = Pose(cv2.Rodrigues(rvec)[0], tvec.reshape(3))
    mean_error = float(errors[inliers].mean())
    if mean_error > settings.max_reprojection_error or not _in_front(cuboid_pose, object_points):
        return None
    return PoseSolution(cuboid_pose.moved_origin(-np.asarray(cuboid.center)), cuboid_pose, inliers, mean_error)


def _sqpnp(object_points: np.ndarray, image_points: np.ndarray, camera: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(rvec, tvec) of the cuboid frame, or None on degenerate input."""
    ok, rvec, tvec = cv2.solvePnP(
        object_points.astype(np.float64), image_points.astype(np.float64), camera, None, flags=cv2.SOLVEPNP_SQPNP
    )
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
