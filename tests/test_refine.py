"""Detect, crop, refine: object crops map pixels and points alike, training cuts them at the set
scale, and inference's second pass turns a coarse network's keypoints on a small object into
precise ones."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from dope_stream.geometry import Cuboid, Intrinsics, Pose, pixel_to_map, map_to_pixel, projected_cuboid
from infer.detector import Detector, RefineSettings
from infer_maps import draw_maps
from trainer.crops import ZoomCrop
from trainer.meta import ModelMeta

INTRINSICS = Intrinsics(600.0, 600.0, 319.5, 239.5, 640, 480)
CUBOID = Cuboid(center=(0.0, 0.0, 0.0), extent=(0.06, 0.09, 0.19))
HALF = (0.5, 0.5, 0.5)


def _bright_spot(image: np.ndarray) -> np.ndarray:
    """(u, v) intensity-weighted centre of the pixels above half the maximum."""
    grey = image.astype(np.float64).sum(axis=2)
    weight = np.where(grey > grey.max() / 2, grey, 0.0)
    rows, cols = np.nonzero(weight)
    return np.array([(cols * weight[rows, cols]).sum(), (rows * weight[rows, cols]).sum()]) / weight.sum()


@pytest.mark.parametrize("zoom_target, radius", [(150.0, 3), (20.0, 12)])
def test_a_crop_shows_an_image_point_where_to_crop_maps_it(zoom_target, radius):
    image = np.zeros((480, 640, 3), np.uint8)
    point = np.array([401.3, 122.7])
    cv2.circle(image, (int(round(point[0] * 16)), int(round(point[1] * 16))), radius * 16, (255, 255, 255), -1,
               lineType=cv2.LINE_AA, shift=4)
    corners = point + np.array([[-30.0, -20.0], [30.0, 20.0]])  # a 60 px wide box around the point
    crop = ZoomCrop.around(corners, zoom_target, (240, 200), shift=(7.0, -5.0))
    cut = crop.cut(image)
    assert cut.shape == (200, 240, 3)
    expected = crop.to_crop(point)
    np.testing.assert_allclose(expected, [119.5 + 7.0, 99.5 - 5.0], atol=1e-9)
    np.testing.assert_allclose(_bright_spot(cut), expected, atol=0.35)
    np.testing.assert_allclose(crop.to_image(expected), point, atol=1e-9)


class _CoarseDotNetwork:
    """Stands in for a network that finds its object from the image it is given, but only to the
    nearest map cell: 9 dots (green marker, red = keypoint index) are located in the input and
    drawn as maps at their cell centres. A small object's keypoints are then off by up to half a
    cell (4 px); zoomed in, the same cell is a smaller part of the object."""

    fixed_size = None

    def __init__(self):
        self.seen_sizes: list[tuple[int, int]] = []
        self.centroid_offsets: list[float] = []  # pixels from the input's centre to the centroid dot

    def __call__(self, batch: np.ndarray):
        height, width = batch.shape[2:]
        self.seen_sizes.append((width, height))
        uv = self.located_dots(batch)
        self.centroid_offsets.append(float(np.linalg.norm(uv[8] - (np.array([width, height]) - 1) / 2)))
        cells = np.rint(pixel_to_map(uv, 8))
        return draw_maps([map_to_pixel(cells, 8)] if self.finds(uv) else [], width, height)

    @staticmethod
    def located_dots(batch: np.ndarray) -> np.ndarray:
        rgb = (batch[0] * 0.5 + 0.5) * 255.0  # undo the HALF normalisation
        marked = rgb[1] > 250  # dot cores only: interpolated edges mix a dot's code with the background
        uv = np.full((9, 2), np.nan)
        for k in range(9):
            rows, cols = np.nonzero(marked & (np.abs(rgb[0] - 20.0 * (k + 1)) < 8))
            if len(rows):
                uv[k] = cols.mean(), rows.mean()
        return uv

    def finds(self, uv: np.ndarray) -> bool:
        return True


class _SizeLimitedDotNetwork(_CoarseDotNetwork):
    """`_CoarseDotNetwork` that finds its object only where the corners span at most `largest`
    pixels of its input, as a network finds objects only at the sizes it trained on."""

    def __init__(self, largest: float):
        super().__init__()
        self.largest = largest

    def finds(self, uv: np.ndarray) -> bool:
        return bool(np.nanmax(np.ptp(uv[:8], axis=0)) <= self.largest)


def _dotted_image(keypoints: np.ndarray, radius: int = 2) -> np.ndarray:
    image = np.full((480, 640, 3), 40, np.uint8)
    for k, (u, v) in enumerate(keypoints):
        cv2.circle(image, (int(round(u * 16)), int(round(v * 16))), radius * 16, (20 * (k + 1), 255, 0), -1, shift=4)
    return image


POSES = [  # small objects (50-90 px in 640x480) whose 9 dots lie apart
    Pose(Rotation.from_rotvec(rotvec).as_matrix(), np.array([0.05 - 0.02 * i, -0.03 + 0.01 * i, 1.6]))
    for i, rotvec in enumerate([[1.2, 0.4, 0.3], [0.9, 0.5, 0.2], [1.0, -0.6, 0.4], [0.5, 0.9, 0.1], [1.4, 0.2, 0.6]])
]


def _detect(truth: Pose, object_size: int):
    keypoints = projected_cuboid(CUBOID, truth, INTRINSICS)
    network = _CoarseDotNetwork()
    info = ModelMeta("test", "bottle", CUBOID, None, 240, HALF, HALF)
    detector = Detector(network, info, refine_settings=RefineSettings(object_size=object_size))
    (detection,) = detector.detect(_dotted_image(keypoints), INTRINSICS)
    error = np.linalg.norm(detection.keypoints - keypoints, axis=1).mean()
    return error, abs(detection.pose.translation[2] - truth.translation[2]), network.seen_sizes


def test_refinement_makes_a_small_objects_keypoints_precise():
    one_pass = np.array([_detect(truth, 0)[:2] for truth in POSES])  # (pose, [keypoint px, depth m])
    refined = np.array([_detect(truth, 160)[:2] for truth in POSES])
    assert _detect(POSES[0], 0)[2] == [(640, 480)] and _detect(POSES[0], 160)[2] == [(640, 480), (240, 240)]
    assert one_pass[:, 0].mean() > 1.5  # the cell grid shows: pixels off
    # The crops show the objects about 2x larger, so the same grid errs about half as much.
    assert refined[:, 0].mean() < one_pass[:, 0].mean() / 1.5
    assert refined[:, 1].mean() < one_pass[:, 1].mean()


def test_detections_of_one_object_are_kept_once_and_others_kept():
    keypoints = projected_cuboid(CUBOID, POSES[0], INTRINSICS)
    detector = Detector(_CoarseDotNetwork(), ModelMeta("test", "bottle", CUBOID, None, 240, HALF, HALF),
                        refine_settings=RefineSettings(object_size=160))
    (best,) = detector.detect(_dotted_image(keypoints), INTRINSICS)
    nearby = dataclasses.replace(best, score=best.score / 2, projected_cuboid=best.projected_cuboid + 3.0)
    elsewhere = dataclasses.replace(best, score=best.score / 3, projected_cuboid=best.projected_cuboid + 200.0)
    assert detector._without_duplicates([nearby, elsewhere, best]) == [best, elsewhere]


def test_training_object_crops_show_the_object_at_the_crop_size(tmp_path: Path):
    from dope_stream.reader import open_dataset
    from trainer.data import EncoderSettings, FrameEncoder
    from toy_dataset import write_folder

    samples = open_dataset([write_folder(tmp_path, count=4, size=320)])
    settings = EncoderSettings("toy_box", 128, 1.0, 1.5, unit="m", train=True, object_crops=1.0, object_crop_size=96,
                               rotation=0.0, scale_range=(1.0, 1.0))
    encoder = FrameEncoder(settings)
    for index in range(4):
        item = encoder(samples[index], seed=index)
        corners = item["keypoints"][0, :8].numpy()
        # Affine's translation jitter moves the object, never rescales it.
        assert abs(np.ptp(corners, axis=0).max() - 96) < 1.0
        centre = (corners.min(axis=0) + corners.max(axis=0)) / 2
        assert np.all(np.abs(centre - 63.5) < 0.1 * 96 + 0.05 * 128 + 1)



def test_frames_rendered_larger_are_shrunk_whole_and_cropped_from_their_own_pixels(tmp_path: Path):
    """`frame_height`: a 640x480 frame is shown whole at 320x240 (a dot and its keypoint moved
    alike), while object crops are cut from the rendered pixels as without it."""
    from dope_stream.reader import open_dataset
    from trainer.data import EncoderSettings, FrameEncoder
    from toy_dataset import write_folder

    settings = EncoderSettings("toy_box", 128, 1.0, 1.5, unit="m", train=True, object_crops=1.0, object_crop_size=96,
                               rotation=0.0, scale_range=(1.0, 1.0))
    image = np.zeros((480, 640, 3), np.uint8)
    point = np.array([[[401.3, 122.7]]])
    cv2.circle(image, (int(round(401.3 * 16)), int(round(122.7 * 16))), 6 * 16, (255, 255, 255), -1,
               lineType=cv2.LINE_AA, shift=4)
    shrunk, moved = FrameEncoder(dataclasses.replace(settings, frame_height=240))._full_frame(image, point)
    assert shrunk.shape == (240, 320, 3)
    np.testing.assert_allclose(_bright_spot(shrunk), moved[0, 0], atol=0.35)
    np.testing.assert_allclose(moved[0, 0], (point[0, 0] + 0.5) / 2 - 0.5)

    samples = open_dataset([write_folder(tmp_path, count=2, size=320)])
    plain, shrinking = FrameEncoder(settings), FrameEncoder(dataclasses.replace(settings, frame_height=160))
    for index in range(2):
        assert torch.equal(plain(samples[index], seed=index)["image"], shrinking(samples[index], seed=index)["image"])


def test_each_refinement_iteration_crops_around_the_previous_pose():
    """Iterations: each crop is cut around the previous crop's result, so the network sees the
    object at the crop's centre, and the pose stays as precise as after one crop."""
    info = ModelMeta("test", "bottle", CUBOID, None, 240, HALF, HALF)
    errors = np.zeros((len(POSES), 3))  # one pass, 1 and 2 iterations
    offsets = []  # (first crop, second crop) centroid offsets
    for row, truth in enumerate(POSES):
        keypoints = projected_cuboid(CUBOID, truth, INTRINSICS)
        errors[row, 0] = _detect(truth, 0)[0]
        for iterations in (1, 2):
            network = _CoarseDotNetwork()
            detector = Detector(network, info, refine_settings=RefineSettings(object_size=160, iterations=iterations))
            (detection,) = detector.detect(_dotted_image(keypoints), INTRINSICS)
            assert network.seen_sizes == [(640, 480)] + [(240, 240)] * iterations
            errors[row, iterations] = np.linalg.norm(detection.keypoints - keypoints, axis=1).mean()
        offsets.append(network.centroid_offsets[1:])
    one_pass, once, twice = errors.mean(axis=0)
    first_crop, second_crop = np.mean(offsets, axis=0)
    # The second crop is centred on the refined object (not exactly on its centroid: crops centre the
    # cuboid's screen box, which perspective moves off the projected centroid).
    assert second_crop < 0.7 * first_crop
    assert twice < one_pass / 1.5 and twice <= once + 0.3


def test_the_first_pass_pyramid_finds_an_object_too_large_for_the_native_pass():
    """A network that finds objects only up to 200 px misses a 330 px one at the native 640x480; the
    pyramid's 320x240 level finds it, its refinement crop poses it, and an object found at several
    levels is reported once."""
    info = ModelMeta("test", "bottle", CUBOID, None, 240, HALF, HALF)
    near = Pose(Rotation.from_rotvec([1.2, 0.4, 0.3]).as_matrix(), np.array([0.0, 0.02, 0.39]))
    keypoints = projected_cuboid(CUBOID, near, INTRINSICS)
    assert 300 < np.ptp(keypoints[:8], axis=0).max() < 400
    image = _dotted_image(keypoints, radius=10)  # dots that survive the 160x120 level
    refine = RefineSettings(object_size=160)
    native = _SizeLimitedDotNetwork(largest=200)
    assert Detector(native, info, refine_settings=refine).detect(image, INTRINSICS) == []
    assert native.seen_sizes == [(640, 480)]

    network = _SizeLimitedDotNetwork(largest=200)
    detector = Detector(network, info, refine_settings=refine, pyramid=(2.0, 1.0, 0.5))
    assert detector.first_pass_sizes(640, 480) == [(640, 480), (320, 240), (160, 120)]
    (detection,) = detector.detect(image, INTRINSICS)
    assert network.seen_sizes[:3] == [(640, 480), (320, 240), (160, 120)]
    # The crop shows it at 160 px, so a map cell there is 2.1x larger in the image: within half of one.
    extent = np.ptp(keypoints[:8], axis=0).max()
    assert np.linalg.norm(detection.keypoints - keypoints, axis=1).mean() < 0.5 * 8 * extent / 160
    assert abs(detection.pose.translation[2] - near.translation[2]) < 0.05 * near.translation[2]

    small = projected_cuboid(CUBOID, POSES[0], INTRINSICS)  # found at 640x480 and 320x240: once
    detections = Detector(_CoarseDotNetwork(), info, refine_settings=refine, pyramid=(2.0, 1.0, 0.5)).detect(
        _dotted_image(small, radius=4), INTRINSICS)
    assert len(detections) == 1
    assert np.linalg.norm(detections[0].keypoints - small, axis=1).mean() < 2.0


def test_the_pyramid_falls_back_to_one_pass_where_sizes_are_fixed_or_unknown():
    pyramid = (2.0, 1.0, 0.5)
    fixed = _CoarseDotNetwork()
    fixed.fixed_size = (320, 240)
    info = ModelMeta("test", "bottle", CUBOID, None, 240, HALF, HALF)
    assert Detector(fixed, info, pyramid=pyramid).first_pass_sizes(640, 480) == [(320, 240)]
    unknown = dataclasses.replace(info, input_size=None)
    assert Detector(_CoarseDotNetwork(), unknown, pyramid=pyramid).first_pass_sizes(640, 480) == [(640, 480)]
    # relative to --input_height when one is given
    assert Detector(_CoarseDotNetwork(), unknown, input_height=480, pyramid=(1.0, 0.5)).first_pass_sizes(640, 480) == [
        (640, 480), (320, 240)]


def test_detections_scoring_under_min_score_are_dropped():
    keypoints = projected_cuboid(CUBOID, POSES[0], INTRINSICS)
    info = ModelMeta("test", "bottle", CUBOID, None, 240, HALF, HALF)
    (detection,) = Detector(_CoarseDotNetwork(), info).detect(_dotted_image(keypoints), INTRINSICS)
    assert Detector(_CoarseDotNetwork(), info, min_score=detection.score).detect(_dotted_image(keypoints), INTRINSICS)
    assert Detector(_CoarseDotNetwork(), info, min_score=detection.score + 0.01).detect(_dotted_image(keypoints), INTRINSICS) == []
