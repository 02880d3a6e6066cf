"""Augmentation with albumentations: keypoints follow the image.

Training: random zoom + rotation about the image centre with a constant border (never reflected:
a mirrored copy of the object would be an unlabelled instance), a random crop of `image_size`,
colour jitter, noise and blur; with `camera_effects` the noise and blur become a camera model
(`camera_effect_transforms`). Validation: a centre crop only. Each call is seeded, so a sample's
augmentation depends only on (seed, epoch, index), whatever the worker that draws it.
"""

from __future__ import annotations

import cv2
import numpy as np

from dope_stream.errors import DopeError


def build_transform(image_size: int, train: bool, rotation: float = 30.0, scale_range=(0.75, 1.25),
                    camera_effects: bool = False):
    import albumentations as A

    keypoint_params = A.KeypointParams(format="xy", remove_invisible=False)
    if not train:
        return A.Compose([A.CenterCrop(image_size, image_size)], keypoint_params=keypoint_params)
    geometry = [
        A.Affine(
            scale=tuple(scale_range), rotate=(-rotation, rotation), translate_percent=(-0.05, 0.05),
            border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.9,
        ),
        A.RandomCrop(image_size, image_size),
    ]
    colour = [A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05, p=0.8)]
    if camera_effects:
        return A.Compose(geometry + colour + camera_effect_transforms(), keypoint_params=keypoint_params)
    return A.Compose(
        geometry + colour + [A.GaussNoise(std_range=(0.01, 0.05), p=0.3), A.GaussianBlur(blur_limit=(3, 5), p=0.2)],
        keypoint_params=keypoint_params,
    )


def camera_effect_transforms() -> list:
    """What a real RGB(-D) camera does to an image and a raster render lacks, in the order the camera
    applies it: white balance (black-body illuminants), exposure and tone curve, vignetting, motion or
    defocus blur, sensor noise (shot + read, colour), resolution loss, then JPEG artefacts."""
    import albumentations as A

    return [
        A.PlanckianJitter(mode="blackbody", temperature_limit=(3000, 9000), p=0.5),
        A.RandomGamma(gamma_limit=(70, 140), p=0.4),
        A.Illumination(mode="corner", intensity_range=(0.05, 0.2), p=0.3),  # vignetting
        A.OneOf([
            A.MotionBlur(blur_limit=(3, 7)),
            A.Defocus(radius=(1, 3), alias_blur=(0.1, 0.3)),
            A.GaussianBlur(blur_limit=(3, 5)),
        ], p=0.35),
        A.OneOf([A.ISONoise(color_shift=(0.01, 0.05), intensity=(0.1, 0.5)), A.GaussNoise(std_range=(0.01, 0.05))], p=0.5),
        A.Downscale(scale_range=(0.5, 0.9), p=0.15),
        A.ImageCompression(quality_range=(40, 95), p=0.5),
    ]


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
