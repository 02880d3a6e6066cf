"""PnP: exact poses from exact keypoints, outlier rejection, and implausible solutions refused."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from dope_stream.geometry import Cuboid, Intrinsics, Pose, projected_cuboid
from infer.pnp import PnPSettings, solve_pose

INTRINSICS = Intrinsics(500.0, 510.0, 320.0, 240.0, 640, 480)
CUBOID = Cuboid(center=(0.01, -0.02, 0.03), extent=(0.06, 0.09, 0.19))
TRUTH = Pose(Rotation.from_rotvec([1.0, 0.2, -0.4]).as_matrix(), np.array([-0.05, 0.04, 0.8]))


def test_exact_keypoints_give_the_mesh_frame_pose():
    solution = solve_pose(projected_cuboid(CUBOID, TRUTH, INTRINSICS), CUBOID, INTRINSICS)
    np.testing.assert_allclose(solution.pose.translation, TRUTH.translation, atol=1e-6)
    np.testing.assert_allclose(solution.pose.rotation, TRUTH.rotation, atol=1e-6)
    # The cuboid frame sits at the AABB centre of the mesh frame.
    np.testing.assert_allclose(solution.cuboid_pose.translation, TRUTH.apply(np.array([CUBOID.center]))[0], atol=1e-6)
    assert solution.inliers.all() and solution.reprojection_error < 1e-3


def test_one_wild_keypoint_is_dropped():
    uv = projected_cuboid(CUBOID, TRUTH, INTRINSICS)
    uv[3] += [60.0, -45.0]
    solution = solve_pose(uv, CUBOID, INTRINSICS)
    assert not solution.inliers[3] and solution.inliers.sum() == 8
    np.testing.assert_allclose(solution.pose.translation, TRUTH.translation, atol=1e-5)


def test_two_wild_keypoints_are_both_left_out():
    uv = projected_cuboid(CUBOID, TRUTH, INTRINSICS)
    uv[5] += [-70.0, 20.0]
    uv[7] += [35.0, 60.0]
    solution = solve_pose(uv, CUBOID, INTRINSICS)
    np.testing.assert_array_equal(np.flatnonzero(~solution.inliers), [5, 7])
    np.testing.assert_allclose(solution.pose.translation, TRUTH.translation, atol=1e-5)


def test_too_few_keypoints_give_no_pose():
    uv = projected_cuboid(CUBOID, TRUTH, INTRINSICS)
    uv[[0, 1, 2, 3]] = np.nan
    assert solve_pose(uv, CUBOID, INTRINSICS) is None
    assert solve_pose(uv, CUBOID, INTRINSICS, PnPSettings(min_points=5)) is not None


def test_keypoints_that_fit_no_cuboid_are_rejected():
    rng = np.random.default_rng(3)
    uv = rng.uniform([0, 0], [640, 480], size=(9, 2))
    assert solve_pose(uv, CUBOID, INTRINSICS) is None


def test_coinciding_keypoints_give_no_pose():
    uv = np.tile([[200.0, 150.0]], (9, 1)) + np.random.default_rng(0).normal(scale=1e-9, size=(9, 2))
    assert solve_pose(uv, CUBOID, INTRINSICS) is None


def test_a_pose_behind_the_camera_is_rejected():
    # Keypoints of a cuboid straddling the image plane: some corners have z < 0.
    straddling = Pose(np.eye(3), np.array([0.0, 0.0, 0.05]))
    uv = projected_cuboid(CUBOID, straddling, INTRINSICS)
    assert solve_pose(uv, CUBOID, INTRINSICS, PnPSettings(max_reprojection_error=1e9, inlier_threshold=1e9)) is None


def test_the_generators_annotations_solve_to_their_own_poses(generated_shards):
    """Cross-stage convention check: the cuboid from the manifest + the annotated keypoints give back
    the annotated pose of the mesh frame (cuboid order, AABB centre offset, quaternion order)."""
    from dope_stream.reader import open_dataset

    dataset = open_dataset([generated_shards])
    checked = 0
    for index in range(len(dataset)):
        frame = dataset.frame(index)
        for obj in frame.objects:
            cuboid = dataset.cuboids[obj.class_name]
            solution = solve_pose(obj.projected_cuboid, cuboid, frame.intrinsics)
            truth = Pose.from_quaternion_xyzw(obj.quaternion_xyzw, obj.location)
            np.testing.assert_allclose(solution.pose.translation, truth.translation, atol=1e-4)
            np.testing.assert_allclose(solution.pose.rotation, truth.rotation, atol=1e-3)
            checked += 1
    assert checked >= 6
