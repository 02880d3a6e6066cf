"""Whole image -> detections: resize, normalise, run the network (torch or onnxruntime), decode, PnP.

Any image size works: the image is resized to the network's input size (a multiple of 8, the
networks' output stride; or the ONNX model's fixed size), the intrinsics are scaled to match
with `Intrinsics.scaled`, and the decoded keypoints are mapped back to the original pixels before
PnP, so poses, keypoints and reprojections all refer to the image the user gave.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from dope_stream.geometry import NUM_KEYPOINTS, Intrinsics, Pose, projected_cuboid, resized_pixels
from dope_stream.symmetry import Symmetries
from trainer.crops import ZoomCrop
from trainer.decode import DecodeSettings, ObjectKeypoints, decode_network_maps
from trainer.meta import ModelMeta

from .pnp import PnPSettings, solve_pose

log = logging.getLogger(__name__)

CENTROID_INDEX = NUM_KEYPOINTS - 1  # the 9th keypoint
SIZE_MULTIPLE = 8  # input sizes the registered networks accept: multiples of their output stride


class Backend(Protocol):
    """Runs the network on one normalised image (1, 3, H, W) -> last stage belief (9,h,w), affinity
    (16,h,w), and for offset networks their corner offsets (16,h,w)."""

    fixed_size: tuple[int, int] | None  # (width, height) the model requires, or None for any size

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, ...]: ...


class TorchBackend:
    fixed_size = None

    def __init__(self, model, device: str = "cpu", offsets: bool = False):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.offsets = offsets
        # Channels-last runs the (depthwise) convolutions of both networks faster on CPU and GPU.
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        with self.torch.inference_mode():
            x = self.torch.from_numpy(batch).to(self.device).contiguous(memory_format=self.torch.channels_last)
            if not self.offsets:
                return tuple(m[0].float().cpu().numpy() for m in self.model(x)[-1])
            stages, offsets = self.model(x, offsets=True)
        return (*(m[0].float().cpu().numpy() for m in stages[-1]), offsets[0].float().cpu().numpy())


@dataclass(frozen=True)
class Detection:
    """One object found in an image (pixels of that image, poses of the mesh's own frame)."""

    class_name: str
    pose: Pose
    projected_cuboid: np.ndarray  # (9, 2) reprojected from the pose
    keypoints: np.ndarray  # (9, 2) decoded, NaN where not found
    keypoint_scores: np.ndarray  # (9,) belief at each keypoint, 0 where not found
    inliers: np.ndarray  # (9,) bool, keypoints the pose was solved from
    score: float  # sum of the inliers' beliefs / 9: high when many keypoints are found confidently
    reprojection_error: float  # mean pixels over inliers

    def to_json(self, index: int) -> dict:
        return {
            "class": self.class_name,
            "name": f"{self.class_name}_{index}",
            "location": self.pose.translation.tolist(),
            "quaternion_xyzw": self.pose.quaternion_xyzw.tolist(),
            "projected_cuboid": self.projected_cuboid.tolist(),
            "keypoints": [None if np.isnan(p[0]) else p.tolist() for p in self.keypoints],
            "keypoint_scores": self.keypoint_scores.tolist(),
            "inliers": self.inliers.tolist(),
            "score": self.score,
            "reprojection_error_px": self.reprojection_error,
        }


def network_input(image_rgb: np.ndarray, size: tuple[int, int], mean, std) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (1, 3, h, w) float32 network input of `size` (w, h): (x / 255 - mean) / std."""
    if (image_rgb.shape[1], image_rgb.shape[0]) != size:
        shrinking = size[0] < image_rgb.shape[1]
        image_rgb = cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    std = np.asarray(std, dtype=np.float32)
    scale, offset = 1.0 / (255.0 * std), -np.asarray(mean, dtype=np.float32) / std
    # One multiply-add per plane, straight into the output: 0.6 ms at 640x480 where transposing and
    # normalising the whole (H, W, 3) array took 3.5-5 ms, a tenth of the light network's time.
    batch = np.empty((1, 3, size[1], size[0]), np.float32)
    for channel, plane in enumerate(cv2.split(image_rgb)):
        np.multiply(plane, scale[channel], out=batch[0, channel], dtype=np.float32)
        batch[0, channel] += offset[channel]
    return batch


@dataclass(frozen=True)
class RefineSettings:
    """The second pass ("detect, crop, refine", `trainer.crops`): each first-pass detection is cut
    out of the image, zoomed so its cuboid spans `object_size` pixels of a network input of the
    training size, and detected again there. Small or large objects are then seen at one scale, with
    their keypoints on more map cells; the pose comes from the crop's keypoints mapped back to the
    image (its intrinsics unchanged)."""

    object_size: int = 0  # pixels the cuboid's larger side spans in the crop; 0: one pass only
    input_size: int = 256  # crop side in pixels when the model does not say its training size
    duplicate_distance: float = 0.25  # refined centroids closer than this share of the object: one object
    iterations: int = 1  # crops per detection, each centred and scaled on the previous one's pose (dope infer: 2)


class Detector:
    """Image -> detections for one object class (`info.cuboid` must be known).

    `pyramid`: the first pass runs at these image heights, as multiples of a reference height
    (`input_height`, else the model's training input size), and the detections of every level are
    refined and merged (empty: one pass at `network_size`). The network finds objects well only at
    the sizes it trained on: on 640x480 frames it put a third of bottles taller than 250 px within
    5 cm in one native pass, against three quarters at half the size, while the smallest objects need
    the native pixels (README, "Real photos")."""

    def __init__(
        self, backend: Backend, info: ModelMeta, decode_settings: DecodeSettings = DecodeSettings(),
        pnp_settings: PnPSettings = PnPSettings(), input_height: int | None = None,
        refine_settings: RefineSettings = RefineSettings(), pyramid: tuple[float, ...] = (), min_score: float = 0.0,
    ):
        self.backend, self.info = backend, info
        # Poses are reported as the symmetry group's canonical one (as the labels were trained).
        self.symmetries = Symmetries.from_dict(info.symmetries) if info.symmetries else None
        self.decode_settings, self.pnp_settings, self.refine_settings = decode_settings, pnp_settings, refine_settings
        self.input_height = input_height
        self.pyramid = pyramid
        self.min_score = min_score  # detections scoring less are dropped (after refinement: their final score)

    def network_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the network input for an image of this size."""
        if self.backend.fixed_size is not None:
            return self.backend.fixed_size
        scale = 1.0 if self.input_height is None else self.input_height / height
        return _round_to_multiple(width * scale), _round_to_multiple(height * scale)

    def first_pass_sizes(self, width: int, height: int) -> list[tuple[int, int]]:
        """(width, height) of each first-pass network input: `network_size`, or one per pyramid level
        (a fixed-size ONNX model, or a model that does not say its training size, runs one)."""
        reference = self.input_height or self.info.input_size
        if not self.pyramid or self.backend.fixed_size is not None or not reference:
            return [self.network_size(width, height)]
        sizes = [(_round_to_multiple(width * level * reference / height), _round_to_multiple(level * reference))
                 for level in self.pyramid]
        return list(dict.fromkeys(sizes))

    def preprocess(self, image_rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        return network_input(image_rgb, size, self.info.mean, self.info.std)

    def keypoints(self, image_rgb: np.ndarray, size: tuple[int, int] | None = None) -> list[ObjectKeypoints]:
        """Decoded keypoints of every object, in pixels of the given image (run at `size`, default
        `network_size`)."""
        height, width = image_rgb.shape[:2]
        size = size or self.network_size(width, height)
        belief, affinity, *offsets = self.backend(self.preprocess(image_rgb, size))
        objects = decode_network_maps(belief, affinity, offsets[0] if offsets else None, self.info.stride,
                                      self.decode_settings, self.info.offset_scale, self.info.map_convention)
        # Inverse of the resize: pixel centres map as in Intrinsics.scaled.
        scale = np.array([width / size[0], height / size[1]])
        return [ObjectKeypoints(resized_pixels(o.uv, scale), o.scores) for o in objects]

    def detect(self, image_rgb: np.ndarray, intrinsics: Intrinsics) -> list[Detection]:
        """Objects with a plausible pose, best score first."""
        sizes = self.first_pass_sizes(image_rgb.shape[1], image_rgb.shape[0])
        found = (self._solve(o, intrinsics) for size in sizes for o in self.keypoints(image_rgb, size))
        detections = [d for d in found if d is not None]
        if self.refine_settings.object_size > 0:
            settled = [False] * len(detections)  # a crop found nothing new: the next one would be the same crop
            for _ in range(self.refine_settings.iterations):
                for k, detection in enumerate(detections):
                    if not settled[k]:
                        detections[k] = self._refined(detection, image_rgb, intrinsics)
                        settled[k] = detections[k] is detection
        if self.refine_settings.object_size > 0 or len(sizes) > 1:
            detections = self._without_duplicates(detections)
        kept = sorted((d for d in detections if d.score >= self.min_score), key=lambda d: -d.score)
        return [self._at_calibrated_distance(d, intrinsics) for d in kept] if self.info.distance_scale != 1.0 else kept

    def _at_calibrated_distance(self, detection: Detection, intrinsics: Intrinsics) -> Detection:
        """The detection with its cuboid centre's distance times the model's `distance_scale`. Done
        last, so the refinement crops are the ones `dope calibrate` measured the bias with."""
        pose = detection.pose.with_distance_scaled(self.info.distance_scale, self.info.cuboid.center)
        return dataclasses.replace(detection, pose=pose, projected_cuboid=projected_cuboid(self.info.cuboid, pose, intrinsics))

    def _solve(self, obj: ObjectKeypoints, intrinsics: Intrinsics) -> Detection | None:
        solution = solve_pose(obj.uv, self.info.cuboid, intrinsics, self.pnp_settings)
        if solution is None:
            return None
        pose = self.symmetries.canonical(solution.pose) if self.symmetries else solution.pose
        return Detection(
            class_name=self.info.class_name,
            pose=pose,
            projected_cuboid=projected_cuboid(self.info.cuboid, pose, intrinsics),
            keypoints=obj.uv,
            keypoint_scores=obj.scores,
            inliers=solution.inliers,
            score=float(obj.scores[solution.inliers].sum() / NUM_KEYPOINTS),
            reprojection_error=solution.reprojection_error,
        )

    def _refined(self, detection: Detection, image_rgb: np.ndarray, intrinsics: Intrinsics) -> Detection:
        """The detection found again in a crop around it at the refinement scale (or kept as it was
        when the crop finds nothing near its centre or no pose)."""
        crop = ZoomCrop.around(detection.projected_cuboid[:8], self.refine_settings.object_size, self.crop_size())
        objects = self.keypoints(crop.cut(image_rgb), crop.size)
        distance = [np.linalg.norm(o.uv[CENTROID_INDEX] - crop.crop_centre) for o in objects]
        if not objects or min(distance) > self.refine_settings.object_size / 2:
            return detection
        nearest = objects[int(np.argmin(distance))]
        refined = self._solve(ObjectKeypoints(crop.to_image(nearest.uv), nearest.scores), intrinsics)
        return refined if refined is not None else detection

    def crop_size(self) -> tuple[int, int]:
        """(width, height) of the refinement crops: the ONNX model's fixed size, else the square the
        network trained on."""
        if self.backend.fixed_size is not None:
            return self.backend.fixed_size
        side = _round_to_multiple(self.info.input_size or self.refine_settings.input_size)
        return side, side

    def _without_duplicates(self, detections: list[Detection]) -> list[Detection]:
        """Best-scored first, dropping any whose centroid lies near a kept one's (two first-pass
        detections of one object, from one pyramid level or two, refine to the same place)."""
        kept: list[Detection] = []
        for detection in sorted(detections, key=lambda d: -d.score):
            centre, extent = detection.projected_cuboid[CENTROID_INDEX], np.ptp(detection.projected_cuboid[:8], axis=0).max()
            if all(np.linalg.norm(centre - k.projected_cuboid[CENTROID_INDEX]) > self.refine_settings.duplicate_distance * extent
                   for k in kept):
                kept.append(detection)
        return kept


def _round_to_multiple(value: float) -> int:
    return max(SIZE_MULTIPLE, int(round(value / SIZE_MULTIPLE)) * SIZE_MULTIPLE)
