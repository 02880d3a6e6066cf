"""Geometry conventions checked against hand-computed values (not against the helpers themselves)."""

from __future__ import annotations

import numpy as np
import pytest

from dope_stream.geometry import (
    CUBOID_EDGES,
    Cuboid,
    Intrinsics,
    Pose,
    map_to_pixel,
    pixel_to_map,
    project_points,
    projected_cuboid,
    random_rotation,
)


def test_cuboid_keypoints_follow_the_dope_order():
    cuboid = Cuboid(center=(1.0, 2.0, 3.0), extent=(2.0, 4.0, 6.0))
    expected = [
        (2, 0, 6), (0, 0, 6), (0, 4, 6), (2, 4, 6),  # corners 0-3: z = +
        (2, 0, 0), (0, 0, 0), (0, 4, 0), (2, 4, 0),  # corners 4-7: z = -
        (1, 2, 3),  # centre
    ]
    np.testing.assert_allclose(cuboid.keypoints(), expected)
    np.testing.assert_allclose(cuboid.keypoints_centered(), np.array(expected) - (1, 2, 3))
    assert Cuboid.from_dict(cuboid.to_dict()) == cuboid
    assert Cuboid.from_points(np.array([[0, 0, 0], [2, 4, 6], [1, 1, 1]])) == cuboid
    # every edge joins corners that differ in exactly one coordinate
    corners = cuboid.keypoints()[:8]
    assert len(set(CUBOID_EDGES)) == 12
    assert all(np.count_nonzero(corners[a] != corners[b]) == 1 for a, b in CUBOID_EDGES)


def test_pose_quaternion_and_projection_by_hand():
    # 90 degrees about z: x -> y. Quaternion (0, 0, sin 45, cos 45).
    pose = Pose.from_quaternion_xyzw([0, 0, np.sqrt(0.5), np.sqrt(0.5)], [0.1, 0.0, 1.0])
    np.testing.assert_allclose(pose.apply(np.array([[1.0, 0, 0]])), [[0.1, 1.0, 1.0]], atol=1e-12)
    np.testing.assert_allclose(pose.quaternion_xyzw, [0, 0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-12)
    intrinsics = Intrinsics(100.0, 200.0, 50.0, 40.0, 101, 81)
    np.testing.assert_allclose(project_points(np.array([[0.1, 1.0, 1.0], [0, 0, 2.0]]), intrinsics), [[60, 240], [50, 40]])
    moved = pose.moved_origin(np.array([1.0, 0, 0]))
    np.testing.assert_allclose(moved.translation, [0.1, 1.0, 1.0], atol=1e-12)
    back = moved.moved_origin(-np.array([1.0, 0, 0]))
    np.testing.assert_allclose(back.translation, pose.translation, atol=1e-12)


def test_projected_cuboid_of_a_fronto_parallel_box():
    intrinsics = Intrinsics(100.0, 100.0, 50.0, 50.0, 101, 101)
    cuboid = Cuboid(center=(0.0, 0.0, 0.0), extent=(0.2, 0.2, 0.0))
    points = projected_cuboid(cuboid, Pose(np.eye(3), np.array([0.0, 0.0, 1.0])), intrinsics)
    assert points[0].tolist() == [60.0, 40.0] and points[2].tolist() == [40.0, 60.0] and points[8].tolist() == [50, 50]


def test_intrinsics_fov_and_scaling_keep_pixel_centres():
    k = Intrinsics.from_fov(640, 480, 90.0)
    assert k.fx == pytest.approx(320.0) and (k.cx, k.cy) == (319.5, 239.5)
    half = k.scaled(320, 240)
    # the top-left corner of the image (pixel -0.5) stays the top-left corner
    assert (half.cx, half.cy, half.fx) == pytest.approx((159.5, 119.5, 160.0))
    assert Intrinsics.from_json(k.to_json()) == k


def test_keypoint_map_convention():
    assert pixel_to_map(3.5, 8) == 0.0 and map_to_pixel(0.0, 8) == 3.5
    uv = np.array([[12.25, 399.0]])
    np.testing.assert_allclose(map_to_pixel(pixel_to_map(uv, 8), 8), uv)


def test_random_rotations_are_uniform_rotations():
    rng = np.random.default_rng(0)
    rotations = np.array([random_rotation(rng) for _ in range(4000)])
    np.testing.assert_allclose(np.einsum("nij,nkj->nik", rotations, rotations), np.broadcast_to(np.eye(3), rotations.shape), atol=1e-9)
    assert np.allclose(np.linalg.det(rotations), 1.0)
    # Haar measure: E[R] = 0 and the rotated z axis is uniform on the sphere (E[z_z] = 0, E[z_z^2] = 1/3).
    assert np.abs(rotations.mean(axis=0)).max() < 0.05
    assert abs((rotations[:, 2, 2] ** 2).mean() - 1 / 3) < 0.03


@pytest.mark.parametrize("pole_axis", [0, 1, 2])
def test_spherical_uv_about_the_pole_axis(pole_axis):
    """Poles at v = 0 and 1, the equator at v = 0.5; u turns a quarter per right angle about the pole."""
    from dope_stream.geometry import spherical_uv

    axes = np.eye(3)
    pole, first, second = axes[pole_axis], axes[(pole_axis + 1) % 3], axes[(pole_axis + 2) % 3]
    vertices = np.stack([pole, -pole, first, second, -first, -second])
    uv = spherical_uv(vertices, pole_axis)
    np.testing.assert_allclose(uv[:, 1], [0, 1, 0.5, 0.5, 0.5, 0.5], atol=1e-6)  # the 1e-12 guard moves the poles
    np.testing.assert_allclose(uv[2:, 0] % 1.0, [0.5, 0.75, 0.0, 0.25], atol=1e-9)  # the seam is at u = 0 = 1
    assert spherical_uv(vertices.astype(np.float32), pole_axis).dtype == np.float32
