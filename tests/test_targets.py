import numpy as np

from dope_stream.geometry import map_to_pixel
from trainer.decode import DecodeSettings, find_peaks
from trainer.targets import affinity_maps, belief_maps

STRIDE = 8


def _weighted_peak(belief: np.ndarray) -> np.ndarray:
    """Pixel position of a map's peak by the weighted mean of a 7x7 window (independent decoder)."""
    row, col = np.unravel_index(belief.argmax(), belief.shape)
    rows, cols = np.mgrid[row - 3 : row + 4, col - 3 : col + 4]
    window = belief[rows, cols]
    cell = np.array([(cols * window).sum(), (rows * window).sum()]) / window.sum()
    return map_to_pixel(cell, STRIDE)


def test_belief_peaks_decode_to_the_keypoint_without_bias():
    rng = np.random.default_rng(1)
    keypoints = rng.uniform(30, 98, (1, 9, 2))
    maps = belief_maps(keypoints, (16, 16), STRIDE, sigma=1.0)
    assert maps.shape == (9, 16, 16) and maps.dtype == np.float32
    for k in range(9):
        assert np.allclose(_weighted_peak(maps[k]), keypoints[0, k], atol=0.05)  # 7x7 truncation: < 1% of a cell
        assert 0.6 < maps[k].max() <= 1.0


def test_the_decoder_inverts_the_targets():
    keypoints = np.random.default_rng(2).uniform(12, 116, (1, 9, 2))
    peaks = find_peaks(belief_maps(keypoints, (16, 16), STRIDE, sigma=0.8), STRIDE, DecodeSettings())
    assert [len(p.uv) for p in peaks] == [1] * 9
    # The floor the decoder subtracts before its weighted mean costs up to an eighth of a pixel.
    assert np.allclose(np.concatenate([p.uv for p in peaks]), keypoints[0], atol=0.15)


def test_belief_is_max_over_instances():
    a = np.full((1, 9, 2), 20.0)
    b = np.full((1, 9, 2), 100.0)
    maps = belief_maps(np.concatenate([a, b]), (16, 16), STRIDE, sigma=1.0)
    single = belief_maps(a, (16, 16), STRIDE, sigma=1.0)
    assert np.allclose(maps[:, :8, :8], np.maximum(single, belief_maps(b, (16, 16), STRIDE, 1.0))[:, :8, :8])
    high = maps[0] > 0.5
    assert high[1:4, 1:4].any() and high[11:14, 11:14].any()


def test_affinity_points_from_corner_to_centroid():
    keypoints = np.zeros((1, 9, 2))
    keypoints[0, :8] = [[20, 20], [100, 20], [100, 100], [20, 100], [44, 44], [76, 44], [76, 76], [44, 76]]
    keypoints[0, 8] = [60, 60]
    fields = affinity_maps(keypoints, (16, 16), STRIDE, radius=1.5)
    for k in range(8):
        corner_cell = np.round((keypoints[0, k] - 3.5) / STRIDE).astype(int)
        vector = fields[2 * k : 2 * k + 2, corner_cell[1], corner_cell[0]]
        expected = (keypoints[0, 8] - keypoints[0, k]) / np.linalg.norm(keypoints[0, 8] - keypoints[0, k])
        assert np.allclose(vector, expected, atol=1e-5)
        norms = np.hypot(fields[2 * k], fields[2 * k + 1])
        assert np.allclose(norms[norms > 0], 1.0, atol=1e-5)
        assert 5 <= (norms > 0).sum() <= 13  # a disk of radius 1.5 cells
    assert np.all(fields[:, 8, 0] == 0)  # far from every corner


def test_affinity_nearest_instance_wins():
    near = np.zeros((1, 9, 2))
    near[0, :8], near[0, 8] = [40, 40], [80, 40]  # vectors point +x
    far = np.zeros((1, 9, 2))
    far[0, :8], far[0, 8] = [52, 40], [52, 0]  # vectors point -y
    fields = affinity_maps(np.concatenate([near, far]), (16, 16), STRIDE, radius=2.5)
    row = round((40 - 3.5) / 8)
    assert np.allclose(fields[0:2, row, round((40 - 3.5) / 8)], [1, 0])
    assert np.allclose(fields[0:2, row, round((52 - 3.5) / 8)], [0, -1])


def test_no_instances_gives_empty_targets():
    assert not belief_maps(np.zeros((0, 9, 2)), (4, 4), STRIDE, 1.0).any()
    assert not affinity_maps(np.zeros((0, 9, 2)), (4, 4), STRIDE, 1.0).any()
