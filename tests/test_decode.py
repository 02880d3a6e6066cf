"""Decoding belief/affinity maps built from known keypoints recovers those keypoints and poses."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dope_stream.geometry import Cuboid, Intrinsics, Pose, projected_cuboid
from trainer.decode import DecodeSettings, decode, find_peaks
from trainer.meta import ModelMeta
from infer.pnp import solve_pose
from infer_maps import draw_maps

INTRINSICS = Intrinsics(600.0, 600.0, 319.5, 239.5, 640, 480)
# An off-centre mesh frame, as in the YCB models: the AABB centre is not the origin.
CUBOID = Cuboid(center=(-0.014, 0.017, 0.01), extent=(0.16, 0.21, 0.07))


def _pose(rotvec, translation) -> Pose:
    return Pose(Rotation.from_rotvec(rotvec).as_matrix(), np.asarray(translation, dtype=np.float64))


def _rotation_error_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(Rotation.from_matrix(a.T @ b).magnitude()))


@pytest.mark.parametrize("background", [0.0, 0.02])
def test_peaks_are_found_at_the_drawn_subpixel_positions(background):
    """Also on a background level, as a sigmoid output has (it must not pull peaks to cell centres)."""
    uv = np.array([[100.3, 50.7], [333.9, 222.2], [600.1, 400.6]] + [[np.nan, np.nan]] * 6)
    belief, _ = draw_maps([uv], 640, 480)
    peaks = find_peaks(np.maximum(belief, background), 8, DecodeSettings())
    for k in range(3):
        assert len(peaks[k].uv) == 1
        np.testing.assert_allclose(peaks[k].uv[0], uv[k], atol=0.1)
        assert peaks[k].scores[0] > 0.5
    assert all(len(p.uv) == 0 for p in peaks[3:])


@pytest.mark.parametrize("removed", [(), (2, 5)])
def test_decoded_ground_truth_maps_give_the_pose_within_1mm_and_half_a_degree(removed):
    truth = _pose([0.4, -0.9, 0.3], [0.03, -0.02, 0.55])
    uv = projected_cuboid(CUBOID, truth, INTRINSICS)
    uv[list(removed)] = np.nan
    belief, affinity = draw_maps([uv], 640, 480)
    objects = decode(belief, affinity, 8, DecodeSettings())
    assert len(objects) == 1
    assert objects[0].found.sum() == 9 - len(removed)
    solution = solve_pose(objects[0].uv, CUBOID, INTRINSICS)
    assert solution is not None
    assert np.linalg.norm(solution.pose.translation - truth.translation) < 1e-3
    assert _rotation_error_deg(solution.pose.rotation, truth.rotation) < 0.5


def test_two_instances_are_grouped_to_their_own_centroids():
    poses = [_pose([0.2, 0.5, 0.1], [-0.12, 0.0, 0.7]), _pose([-0.3, 2.0, 0.4], [0.13, 0.03, 0.75])]
    truths = [projected_cuboid(CUBOID, p, INTRINSICS) for p in poses]
    belief, affinity = draw_maps(truths, 640, 480)
    objects = decode(belief, affinity, 8, DecodeSettings())
    assert len(objects) == 2
    for obj in objects:
        truth = min(truths, key=lambda t: np.linalg.norm(t[8] - obj.uv[8]))
        assert obj.found.all()
        np.testing.assert_allclose(obj.uv, truth, atol=0.5)
    solved = sorted((solve_pose(o.uv, CUBOID, INTRINSICS) for o in objects), key=lambda s: s.pose.translation[0])
    for solution, truth in zip(solved, poses):
        assert np.linalg.norm(solution.pose.translation - truth.translation) < 1e-3


def test_a_corner_whose_affinity_points_away_is_not_grouped():
    truth = projected_cuboid(CUBOID, _pose([0.1, 0.2, 0.0], [0.0, 0.0, 0.6]), INTRINSICS)
    belief, affinity = draw_maps([truth], 640, 480)
    affinity[0:2] *= -1  # corner 0 now "points" away from the only centroid
    objects = decode(belief, affinity, 8, DecodeSettings())
    assert len(objects) == 1
    assert not objects[0].found[0] and objects[0].found[1:].all()


def test_no_centroid_means_no_object():
    truth = projected_cuboid(CUBOID, _pose([0.1, 0.2, 0.0], [0.0, 0.0, 0.6]), INTRINSICS)
    truth[8] = np.nan
    belief, affinity = draw_maps([truth], 640, 480)
    assert decode(belief, affinity, 8, DecodeSettings()) == []


class _PerfectBackend:
    """Stands in for a network that predicts exactly the ground-truth maps of the image it is given."""

    fixed_size = None

    def __init__(self, keypoints_px: np.ndarray, image_size: tuple[int, int]):
        self.keypoints_px, self.image_size = keypoints_px, image_size
        self.seen_sizes: list[tuple[int, int]] = []

    def __call__(self, batch: np.ndarray):
        height, width = batch.shape[2:]
        self.seen_sizes.append((width, height))
        scale = np.array([width / self.image_size[0], height / self.image_size[1]])
        return draw_maps([(self.keypoints_px + 0.5) * scale - 0.5], width, height)


def test_detector_resizes_and_scales_the_camera_for_any_image_size():
    from infer.detector import Detector

    intrinsics = Intrinsics(900.0, 900.0, 499.5, 374.5, 1000, 750)
    truth = _pose([0.3, 0.4, -0.2], [0.02, 0.01, 0.5])
    keypoints = projected_cuboid(CUBOID, truth, intrinsics)
    backend = _PerfectBackend(keypoints, (1000, 750))
    info = ModelMeta("test", "box", CUBOID, None, None, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    detector = Detector(backend, info, input_height=480)
    image = np.zeros((750, 1000, 3), np.uint8)
    (detection,) = detector.detect(image, intrinsics)
    assert backend.seen_sizes == [(640, 480)]
    assert np.linalg.norm(detection.pose.translation - truth.translation) < 1e-3
    assert _rotation_error_deg(detection.pose.rotation, truth.rotation) < 0.5
    np.testing.assert_allclose(detection.projected_cuboid, keypoints, atol=1.0)
    assert 0.9 < detection.score <= 1.0


def test_a_keypoint_just_outside_the_image_gives_no_peak():
    uv = np.array([[-6.0, 200.0], [300.0, 483.0], [320.0, 240.0]] + [[np.nan, np.nan]] * 6)
    belief, _ = draw_maps([uv], 640, 480)
    assert belief[0].max() > 0.3 and belief[1].max() > 0.3  # their tails do reach into the map
    peaks = find_peaks(belief, 8, DecodeSettings())
    assert len(peaks[0].uv) == 0 and len(peaks[1].uv) == 0
    np.testing.assert_allclose(peaks[2].uv, [uv[2]], atol=0.05)


def test_detector_input_is_the_normalised_rgb_image():
    from infer.detector import Detector

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    detector = Detector(_PerfectBackend(np.zeros((9, 2)), (64, 48)), ModelMeta("test", "box", CUBOID, None, None, mean, std))
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    batch = detector.preprocess(image, (64, 48))
    expected = (image.astype(np.float64) / 255.0 - mean) / std  # (H, W, 3), channels in RGB order
    assert batch.shape == (1, 3, 48, 64) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[0].transpose(1, 2, 0), expected, atol=1e-5)


@pytest.mark.parametrize("subpixel", ["parabola", "window"])
@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_wide_peaks_decode_within_0_3_px(sigma, subpixel):
    """The refinement window follows the peak's width (a fixed 7x7 window was 1.3 px off at sigma 2);
    the log-parabola is exact for a Gaussian of any width."""
    rng = np.random.default_rng(int(sigma * 10))
    uv = np.full((9, 2), np.nan)
    uv[:8] = rng.uniform(80, 400, (8, 2))  # one peak per channel, far apart from each other
    belief, _ = draw_maps([uv], 480, 480, sigma=sigma)
    peaks = find_peaks(belief, 8, DecodeSettings(subpixel=subpixel))
    for k in range(8):
        assert len(peaks[k].uv) == 1
        assert np.linalg.norm(peaks[k].uv[0] - uv[k]) < 0.3


@pytest.mark.parametrize("subpixel", ["parabola", "window"])
@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_corners_next_to_the_border_are_found_within_0_3_px(sigma, subpixel):
    """A keypoint 4 px from the image border peaks on the map's outer ring of cells."""
    uv = np.array([[4.0, 200.3], [635.0, 100.6], [300.2, 4.0], [200.7, 475.0], [3.0, 2.0]] + [[np.nan, np.nan]] * 4)
    belief, _ = draw_maps([uv], 640, 480, sigma=sigma)
    peaks = find_peaks(belief, 8, DecodeSettings(subpixel=subpixel))
    for k in range(5):
        assert len(peaks[k].uv) == 1, k
        assert np.linalg.norm(peaks[k].uv[0] - uv[k]) < 0.3, (k, peaks[k].uv[0], uv[k])


@pytest.mark.parametrize("convention", ["centre", "corner"])
def test_targets_decode_without_bias_only_in_their_own_map_convention(convention):
    from trainer.targets import belief_maps

    uv = np.full((1, 9, 2), np.nan)
    uv[0, 0] = [101.3, 77.8]
    belief = belief_maps(np.nan_to_num(uv, nan=-1e6), (30, 40), 8, sigma=1.0, convention=convention)
    other = "corner" if convention == "centre" else "centre"
    (right,) = find_peaks(belief, 8, DecodeSettings(), convention)[0].uv
    (wrong,) = find_peaks(belief, 8, DecodeSettings(), other)[0].uv
    assert np.linalg.norm(right - uv[0, 0]) < 0.15
    np.testing.assert_allclose(np.abs(wrong - uv[0, 0]), [3.5, 3.5], atol=0.15)


def test_a_shoulder_beside_a_sharp_peak_pulls_the_window_but_hardly_the_parabola():
    """The trained network's corner blobs lean towards the object: a sharp peak with a weaker, wider
    shoulder two cells to one side. The window's weighted mean follows the shoulder; the parabola
    through the three cells across the peak sees only its top."""
    peak_uv = np.array([[203.5, 160.2]] + [[np.nan, np.nan]] * 8)
    shoulder_uv = peak_uv + [[16.0, 0.0]]  # two map cells towards the object
    peak, _ = draw_maps([peak_uv], 480, 320, sigma=1.0)
    shoulder, _ = draw_maps([shoulder_uv], 480, 320, sigma=2.0)
    belief = np.maximum(peak, 0.5 * shoulder)
    offsets = {
        method: np.linalg.norm(find_peaks(belief, 8, DecodeSettings(subpixel=method))[0].uv[0] - peak_uv[0])
        for method in ("window", "parabola")
    }
    assert offsets["window"] > 4.0
    assert offsets["parabola"] < 0.5
