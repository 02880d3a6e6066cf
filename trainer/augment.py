"""Augmentation with albumentations: keypoints follow the image.

Training: random zoom + rotation about the image centre with a constant border (never reflected:
a mirrored copy of the object would be an unlabelled instance), a random crop of `image_size`,
colour jitter, noise and blur. Validation: a centre crop only. Each call is seeded, so a sample's
augmentation depends only on (seed, epoch, index), whatever the worker that draws it.
"""

from __future__ import annotations

import cv2
import numpy as np

from dope_stream.errors import DopeError


def build_transform(image_size: int, train: bool, rotation: float = 30.0, scale_range=(0.75, 1.25)):
    import albumentations as A

    keypoint_params = A.KeypointParams(format="xy", remove_invisible=False)
    if not train:
        return A.Compose([A.CenterCrop(image_size, image_size)], keypoint_params=keypoint_params)
    return A.Compose(
        [
            A.Affine(
                scale=tuple(scale_range), rotate=(-rotation, rotation), translate_percent=(-0.05, 0.05),
                border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.9,
            ),
            A.RandomCrop(image_size, image_size),
            A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05, p=0.8),
            A.GaussNoise(std_range=(0.01, 0.05), p=0.3),
            A.GaussianBlur(blur_limit=(3, 5), p=0.2),
        ],
        keypoint_params=keypoint_params,
    )


def apply_transform(transform, image: np.ndarray, keypoints_px: np.ndarray, seed: int, image_size: int, name: str):
    """(H, W, 3) uint8 image, (N, 9, 2) keypoints -> cropped/augmented image and moved keypoints."""
    height, width = image.shape[:2]
    if height < image_size or width < image_size:
        raise DopeError(f"{name}: image {width}x{height} is smaller than the crop (image_size {image_size})")
    transform.set_random_seed(seed)
    flat = keypoints_px.reshape(-1, 2)
    result = transform(image=image, keypoints=flat)
    moved = np.asarray(result["keypoints"], dtype=np.float64).reshape(keypoints_px.shape)
    return result["image"], moved
