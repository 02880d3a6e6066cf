"""Per-frame synthesis: sample -> render -> annotate -> encode, one `Sample` per frame index.

A `FrameSynthesizer` is built once per worker process (local process, Ray actor): it loads the asset
library once and creates one renderer (`renderer: mix` is one composite of two backends). Its
constructor takes only the (picklable) config, so any process can build its own.

Encoded members (WebDataset names): `jpg` or `png` (RGB image), `json` (annotation, see
`dope_stream.annotate`), `seg.png` (uint16 instance ids, 0 = nothing), `depth.png` (uint16 camera z
in millimetres, 0 = nothing, saturating at 65.535 m). PNGs use compression level 1: level 3 (the
default) costs several times more time per frame for a few percent of size.
"""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np

from .annotate import annotate
from .assets import build_asset_library
from .config import GenerateConfig
from .errors import DopeError
from .exchange import Sample
from .geometry import Cuboid
from .render import Renderer, RenderLayers, create_renderer
from .scene import sample_scene

log = logging.getLogger(__name__)

PNG_COMPRESSION = 1
DEPTH_UNITS_PER_METRE = 1000.0  # depth.png holds millimetres


class FrameSynthesizer:
    """Renders frame i of the dataset described by `config`; frame i depends only on (seed, i)."""

    def __init__(self, config: GenerateConfig):
        self.config = config
        self.assets = build_asset_library(config)
        # Created now, so a bad backend fails before the first frame.
        self.renderer: Renderer | None = create_renderer(config.renderer, self.assets, config.render_options())

    def class_cuboids(self) -> dict[str, Cuboid]:
        return {name: self.assets.cuboid(name) for name in self.assets.targets}

    def render(self, index: int) -> Sample:
        if not 0 <= index < self.config.nb_frames:
            raise DopeError(f"frame index {index} is outside 0..{self.config.nb_frames - 1} (nb_frames)")
        scene = sample_scene(self.config, self.assets, index)
        layers = self.renderer.render(scene)
        annotation = annotate(scene, layers, self.assets)
        return Sample(index, encode_members(layers, annotation, self.config))

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()
            self.renderer = None

    def __enter__(self) -> "FrameSynthesizer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def encode_members(layers: RenderLayers, annotation: dict, config: GenerateConfig) -> dict[str, bytes]:
    bgr = cv2.cvtColor(layers.rgb, cv2.COLOR_RGB2BGR)
    if config.image_format == "jpg":
        image = _encode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, config.jpg_quality])
    else:
        image = _encode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    depth_mm = np.clip(np.rint(layers.depth * DEPTH_UNITS_PER_METRE), 0, np.iinfo(np.uint16).max).astype(np.uint16)
    return {
        config.image_format: image,
        "json": json.dumps(annotation, separators=(",", ":")).encode(),
        "seg.png": _encode(".png", layers.instance_id.astype(np.uint16), [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]),
        "depth.png": _encode(".png", depth_mm, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]),
    }


def _encode(extension: str, image: np.ndarray, params: list[int]) -> bytes:
    ok, buffer = cv2.imencode(extension, image, params)
    if not ok:  # only for shapes/dtypes the encoder rejects: a bug, not a user error
        raise RuntimeError(f"OpenCV could not encode a {image.shape} {image.dtype} image as {extension}")
    return buffer.tobytes()
