"""Per-frame synthesis: sample -> render -> annotate -> encode, one `Sample` per frame index.

A `FrameSynthesizer` is built once per worker process (local process, Ray actor): it loads the asset
library once and creates one renderer (`renderer: mix` is one composite of two backends). Its
constructor takes only the (picklable) config, so any process can build its own.

Encoded members (WebDataset names): `jpg` or `png` (RGB image), `json` (annotation, see
`dope_stream.annotate`), `seg.png` (uint16 instance ids, 0 = nothing), `depth.png` (uint16 camera z
in millimetres, 0 = nothing, saturating at 65.535 m); codecs in `dope_stream.exchange`.

`render_frame(index, encoded, decoded)` also gives the members decoded (arrays and the annotation
dict, exactly what a reader decodes from the encoded ones), for the live stream: its consumer then
never decodes. The decoded image is the rendered one, except that a JPEG image that is encoded too
(its shard is kept) is decoded from those bytes, so the trainer sees the pixels it will read back
from the shard in later epochs (a JPEG decode, ~2 ms at 512x512, which the consumer paid before).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import numpy as np

from .annotate import annotate
from .assets import build_asset_library
from .config import GenerateConfig
from .errors import DopeError
from .exchange import LOSSY_IMAGE_FORMATS, RawSample, Sample, decode_image_member, encode_image, encode_layer
from .geometry import Cuboid
from .render import Renderer, RenderLayers, create_renderer
from .scene import sample_scene

log = logging.getLogger(__name__)

DEPTH_UNITS_PER_METRE = 1000.0  # depth.png holds millimetres


@dataclass
class RenderedFrame:
    """Frame `index` as encoded members (a `Sample`) and/or decoded members (see the module docstring)."""

    index: int
    encoded: Sample | None
    decoded: RawSample | None


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
        return self.render_frame(index, encoded=True, decoded=False).encoded

    def render_frame(self, index: int, encoded: bool, decoded: bool) -> RenderedFrame:
        if not 0 <= index < self.config.nb_frames:
            raise DopeError(f"frame index {index} is outside 0..{self.config.nb_frames - 1} (nb_frames)")
        scene = sample_scene(self.config, self.assets, index)
        layers = self.renderer.render(scene)
        annotation = annotate(scene, layers, self.assets)
        members = encode_members(layers, annotation, self.config) if encoded else None
        arrays = decoded_members(layers, annotation, self.config, members) if decoded else None
        return RenderedFrame(index, None if members is None else Sample(index, members), arrays)

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()
            self.renderer = None

    def __enter__(self) -> "FrameSynthesizer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def render_in_calling_thread() -> None:
    """For a process among renderers that fill the cores (`dope generate` workers, Ray CPU actors),
    before its renderer is built: llvmpipe renders in the calling thread. Its own render threads
    only add hand-offs there (measured with 2 workers on 2 cores: ~2 ms more CPU per image, 3-4 %;
    no gain in wall time). A user's LP_NUM_THREADS wins."""
    os.environ.setdefault("LP_NUM_THREADS", "0")


def encode_members(layers: RenderLayers, annotation: dict, config: GenerateConfig) -> dict[str, bytes]:
    return {
        config.image_format: encode_image(layers.rgb, config.image_format, config.jpg_quality),
        "json": json.dumps(annotation, separators=(",", ":")).encode(),
        "seg.png": encode_layer("seg.png", instance_ids(layers)),
        "depth.png": encode_layer("depth.png", depth_millimetres(layers)),
    }


def decoded_members(layers: RenderLayers, annotation: dict, config: GenerateConfig,
                    encoded: dict[str, bytes] | None) -> RawSample:
    """The members as a reader decodes them from `encoded_members` (the lossy image from `encoded`
    when given, else as rendered)."""
    image = layers.rgb
    if encoded is not None and config.image_format in LOSSY_IMAGE_FORMATS:
        image = decode_image_member(encoded[config.image_format])
    return {
        config.image_format: image,
        "json": annotation,
        "seg.png": instance_ids(layers),
        "depth.png": depth_millimetres(layers),
    }


def instance_ids(layers: RenderLayers) -> np.ndarray:
    return layers.instance_id.astype(np.uint16, copy=False)


def depth_millimetres(layers: RenderLayers) -> np.ndarray:
    millimetres = np.rint(layers.depth * DEPTH_UNITS_PER_METRE)
    return np.clip(millimetres, 0, np.iinfo(np.uint16).max).astype(np.uint16)
