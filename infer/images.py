"""Photos in: a folder's (or one file's) images, read as RGB."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dope_stream.errors import DopeError
from dope_stream.exchange import LAYER_SUFFIXES, PHOTO_SUFFIXES


def list_images(path: Path, option: str = "--images") -> list[Path]:
    if path.is_dir():
        images = sorted(
            p for p in path.iterdir()
            if p.suffix.lower() in PHOTO_SUFFIXES and not p.name.lower().endswith(LAYER_SUFFIXES)
        )
        if not images:
            raise DopeError(f"{option} {path}: folder holds no images ({', '.join(PHOTO_SUFFIXES)})")
        return images
    if not path.is_file():
        raise DopeError(f"{option} {path}: no such file or folder")
    return [path]


def read_image(path: Path, option: str = "--images") -> np.ndarray:
    """(H, W, 3) uint8 RGB."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DopeError(f"{option} {path}: cannot be read as an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
