"""Object-centred crops at a fixed scale: "detect, crop, refine".

Training (`object_crops` of the frames) and inference (the second pass of `infer.detector`) cut the
same crop: the window around one object, zoomed so that its cuboid's larger side spans
`object_size` pixels, outside the image filled with black (as the training augmentation's borders).
The network then learns, and is asked, the object at one scale with its keypoints spread over many
map cells, whatever its size in the photo. One definition here, so both sides see the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class ZoomCrop:
    """Image pixels -> crop pixels: crop = zoom * (image - centre) + crop centre (pixel centres at
    integer coordinates, OpenCV's convention)."""

    centre: np.ndarray  # (2,) image pixels at the crop's centre
    zoom: float  # crop pixels per image pixel
    size: tuple[int, int]  # (width, height) of the crop

    @staticmethod
    def around(corners_uv: np.ndarray, object_size: float, size: tuple[int, int], shift=(0.0, 0.0)) -> "ZoomCrop":
        """The crop that shows the box of `corners_uv` (N, 2; NaN ignored) `object_size` pixels large,
        its centre `shift` crop pixels off the crop's centre."""
        low, high = np.nanmin(corners_uv, axis=0), np.nanmax(corners_uv, axis=0)
        zoom = object_size / max(float((high - low).max()), 1.0)
        return ZoomCrop((low + high) / 2 - np.asarray(shift, dtype=np.float64) / zoom, zoom, size)

    @property
    def crop_centre(self) -> np.ndarray:
        """(2,) crop pixels at the crop's centre."""
        return (np.array(self.size, dtype=np.float64) - 1) / 2

    def matrix(self) -> np.ndarray:
        """(2, 3) affine image -> crop."""
        offset = self.crop_centre - self.zoom * self.centre
        return np.array([[self.zoom, 0.0, offset[0]], [0.0, self.zoom, offset[1]]])

    def cut(self, image: np.ndarray) -> np.ndarray:
        """The crop of `image`. Shrinking goes through an area resize first (a warp would alias), of
        the part of the image the crop shows only: a whole 640x480 frame at a zoom of 0.9 costs
        OpenCV's area resize ~7 ms, once per detection."""
        matrix = self.matrix()
        if self.zoom < 1.0:
            window = self._image_window(image.shape[1], image.shape[0])
            if window is None:
                return np.zeros((self.size[1], self.size[0]) + image.shape[2:], image.dtype)
            x0, y0, x1, y1 = window
            part = image[y0:y1, x0:x1]
            small = (max(int(round((x1 - x0) * self.zoom)), 1), max(int(round((y1 - y0) * self.zoom)), 1))
            part = cv2.resize(part, small, interpolation=cv2.INTER_AREA)
            # The resize maps x -> (x - x0 + 0.5) * s - 0.5 per axis; the warp then does the rest.
            scale = np.array(small, dtype=np.float64) / (x1 - x0, y1 - y0)
            offset = (0.5 - np.array([x0, y0], dtype=np.float64)) * scale - 0.5
            resize = np.array([[scale[0], 0.0, offset[0]], [0.0, scale[1], offset[1]]])
            matrix, image = _compose(matrix, cv2.invertAffineTransform(resize)), part
        return cv2.warpAffine(image, matrix, self.size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def _image_window(self, width: int, height: int) -> tuple[int, int, int, int] | None:
        """Integer (x0, y0, x1, y1) of the image pixels the crop shows, a pixel of margin around for
        the interpolation; None when the crop lies outside the image."""
        low = np.floor(self.to_image(np.array([-0.5, -0.5]))).astype(int) - 1
        high = np.ceil(self.to_image(np.array(self.size, dtype=np.float64) - 0.5)).astype(int) + 2
        x0, y0 = np.maximum(low, 0)
        x1, y1 = np.minimum(high, (width, height))
        return None if x1 <= x0 or y1 <= y0 else (int(x0), int(y0), int(x1), int(y1))

    def to_crop(self, uv: np.ndarray) -> np.ndarray:
        return (uv - self.centre) * self.zoom + self.crop_centre

    def to_image(self, uv: np.ndarray) -> np.ndarray:
        return (uv - self.crop_centre) / self.zoom + self.centre


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """(2, 3) affine of `outer` after `inner`."""
    return (np.vstack([outer, [0, 0, 1]]) @ np.vstack([inner, [0, 0, 1]]))[:2]
