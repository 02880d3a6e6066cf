"""The dataset exchange format, in one place (described for users in docs/format.md).

A dataset is a folder holding `manifest.json` and either WebDataset tar shards
(`shard-000000.tar`, ...) or the classic DOPE folder layout (`000000.jpg`, `000000.json`, ...).
A sample is one frame: its members are `jpg`|`png` (RGB image), `json` (annotation),
`seg.png` (uint16 instance ids) and `depth.png` (uint16 millimetres), stored as `KEY.MEMBER`
(`000123.seg.png`), KEY being the frame index on six digits. Shard k holds frames
[k * frames_per_shard, (k + 1) * frames_per_shard), their members adjacent, in key order.

A raw sample (`RawSample`, what webdataset yields) holds each member either encoded (bytes, as
stored) or decoded, under the same name, as webdataset's decoders keep it: the image an (H, W, 3)
uint8 RGB array, `json` a dict, `seg.png` / `depth.png` (H, W) uint16 arrays. The live stream hands
fresh frames over decoded (no encode/decode round trip); `decode_image_member` and `decode_layer_member` pass
decoded members through unchanged.

Codecs (`encode_image`, `encode_layer`, `decode_image_member`, `decode_layer_member`) are OpenCV's: libjpeg-turbo
and libpng, both releasing the GIL. PNGs use zlib level 1 with the `up` filter: level 3 (OpenCV's
default) costs several times more time for a few percent of size, and OpenCV's default adaptive
filter choice at level 1 took 1.7x (depth, 1% smaller files) to 3.5x (segmentation, larger files)
the time of `up`, 1.4x for RGB images (3% smaller); measured on 512x512 frames of
benchmarks/bench_generate.py's scene. Segmentation maps, flat regions of a few ids, also use zlib's
run-length strategy: a third smaller than the default strategy, and no slower.

Everything here is plain Python (no torch, no renderer): the writers, the reader, the live stream,
the trainer and evaluation all use it.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import DopeError
from .geometry import Cuboid

FORMAT_VERSION = 1  # manifest field `format_version`; manifests written before it existed are version 1
MANIFEST_NAME = "manifest.json"
UNITS = "m"  # length unit of everything this project writes

ANNOTATION_MEMBER = "json"
IMAGE_MEMBERS = ("jpg", "png", "jpeg")  # members that may hold a sample's image; the first present is used
LAYER_MEMBERS = ("seg.png", "depth.png")  # per-frame layers beside the image
IMAGE_SUFFIXES = tuple(f".{member}" for member in IMAGE_MEMBERS)
LAYER_SUFFIXES = tuple(f".{member}" for member in LAYER_MEMBERS)
# Photos `dope infer` reads besides dataset images: anything OpenCV decodes.
PHOTO_SUFFIXES = IMAGE_SUFFIXES + (".bmp", ".tif", ".tiff", ".webp")

SHARD_GLOB = "shard-*.tar"
SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
TMP_SUFFIX = ".tmp"  # dataset files being written: `shard-000001.tar.tmp`, `000123.jpg.tmp`

RawSample = dict[str, object]  # WebDataset dict: "__key__" (and "__url__") + member -> bytes or decoded
LOSSY_IMAGE_FORMATS = ("jpg", "jpeg")  # decoding gives other pixels than were encoded
PNG_COMPRESSION = 1  # zlib level


@dataclass
class Sample:
    """One encoded frame: member name (without the key) -> bytes."""

    index: int
    members: dict[str, bytes]

    @property
    def key(self) -> str:
        return sample_key(self.index)


def sample_key(index: int) -> str:
    return f"{index:06d}"


def member_names(image_format: str) -> tuple[str, ...]:
    """The members of every sample written with `image_format` (jpg or png); the JSON last, so in
    the folder layout it marks a finished frame."""
    return (image_format, *LAYER_MEMBERS, ANNOTATION_MEMBER)


def split_member_name(name: str) -> tuple[str, str]:
    """WebDataset convention: 'dir/000123.seg.png' -> ('dir/000123', 'seg.png')."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (ext if dot else "")


# --- member codecs -------------------------------------------------------------------------------

_PNG_IMAGE = [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
_LAYER_PARAMS = {
    "seg.png": [*_PNG_IMAGE, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE],
    "depth.png": _PNG_IMAGE,
}


def encode_image(rgb: np.ndarray, image_format: str, jpg_quality: int) -> bytes:
    """(H, W, 3) uint8 RGB -> the bytes of member `image_format` (jpg or png)."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if image_format in LOSSY_IMAGE_FORMATS:
        return _encode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, jpg_quality])
    return _encode(".png", bgr, _PNG_IMAGE)


def encode_layer(member: str, layer: np.ndarray) -> bytes:
    """(H, W) uint16 `seg.png` or `depth.png` -> its PNG bytes."""
    return _encode(".png", layer, _LAYER_PARAMS[member])


def _encode(extension: str, image: np.ndarray, params: list[int]) -> bytes:
    ok, buffer = cv2.imencode(extension, image, params)
    if not ok:  # only for shapes/dtypes the encoder rejects: a bug, not a user error
        raise RuntimeError(f"OpenCV could not encode a {image.shape} {image.dtype} image as {extension}")
    return buffer.tobytes()


def decode_image_member(data: bytes | np.ndarray) -> np.ndarray | None:
    """An image member -> (H, W, 3) uint8 RGB (None if it cannot be decoded); decoded ones as they are."""
    if isinstance(data, np.ndarray):
        return data
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode_layer_member(data: bytes | np.ndarray) -> np.ndarray | None:
    """A `seg.png` / `depth.png` member -> its (H, W) uint16 array (None if it cannot be decoded)."""
    if isinstance(data, np.ndarray):
        return data
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def decode_members(sample: RawSample) -> RawSample:
    """Every member of `sample` decoded (images, layers, the annotation); `__key__`/`__url__` kept."""
    decoded: RawSample = {}
    for name, value in sample.items():
        if name.startswith("__"):
            decoded[name] = value
        elif name == ANNOTATION_MEMBER:
            decoded[name] = parse_json(value, f"{sample.get('__key__')}.{name}")
        elif name in LAYER_MEMBERS:
            decoded[name] = decode_layer_member(value)
        elif name in IMAGE_MEMBERS:
            decoded[name] = decode_image_member(value)
        else:
            decoded[name] = value
    return decoded


# --- shards --------------------------------------------------------------------------------------


def shard_name(shard: int) -> str:
    return f"shard-{shard:06d}.tar"


def shard_ranges(nb_frames: int, frames_per_shard: int) -> list[range]:
    """Frame indices of each shard, in shard order (the last one may be shorter)."""
    return [range(start, min(start + frames_per_shard, nb_frames)) for start in range(0, nb_frames, frames_per_shard)]


def write_shard(path: Path, samples: Iterable[Sample]) -> None:
    """A tar shard of `samples` (members of a sample adjacent, sorted by name), written atomically.

    The standard library's tarfile writes the WebDataset layout; webdataset's own TarWriter would
    import torch into every writer. Members get fixed metadata (mtime 0, owner "dope", mode 0444),
    so the same samples give the same bytes.
    """

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as stream:
            with tarfile.open(fileobj=stream, mode="w") as tar:
                for sample in samples:
                    for member in sorted(sample.members):
                        _add_member(tar, f"{sample.key}.{member}", sample.members[member])
            stream.flush()
            os.fsync(stream.fileno())

    write_atomically(path, write, dataset_temporary(path))


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o444
    info.uname = info.gname = "dope"
    tar.addfile(info, io.BytesIO(data))


def shard_member_offsets(path: Path) -> Iterator[tuple[str, str, int, int]]:
    """(key, member, byte offset, size) of every file in an uncompressed tar shard (random access)."""
    if path.name.endswith((".tar.gz", ".tgz")):
        raise DopeError(f"{path}: compressed shards have no random access; pass it as a URL or pattern to stream it")
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                if info.isfile():
                    yield *split_member_name(info.name), info.offset_data, info.size
    except tarfile.TarError as err:
        raise DopeError(f"{path}: not a readable tar shard ({err})") from None


def read_shard(path: Path) -> Iterator[RawSample]:
    """The samples of a shard in file order, as webdataset groups them (adjacent members of one key)."""
    with tarfile.open(path) as tar:
        sample: RawSample = {}
        for info in tar:
            if not info.isfile():
                continue
            key, member = split_member_name(info.name)
            if sample and sample["__key__"] != key:
                yield sample
                sample = {}
            sample["__key__"] = key
            sample[member] = tar.extractfile(info).read()
        if sample:
            yield sample


# --- atomic writes -------------------------------------------------------------------------------


def hidden_temporary(path: Path) -> Path:
    """`.NAME.tmp.SUFFIX` beside `path`: keeps the suffix (OpenCV, matplotlib and onnx pick the format
    from it) and starts with a dot, so globs for finished files (`step-*.pt`) skip it."""
    return path.with_name(f".{path.stem}.tmp{path.suffix}")


def dataset_temporary(path: Path) -> Path:
    """`NAME.tmp` beside `path`: no dataset reader matches it, and a resume finds every leftover with
    one glob (`*.tmp`)."""
    return path.with_name(path.name + TMP_SUFFIX)


def write_atomically(path: Path, write: Callable[[Path], object], temporary: Path | None = None) -> Path:
    """Call `write(tmp)` on a temporary sibling of `path` (default `hidden_temporary`), then rename
    it over `path`: readers never see a half-written file and a killed job leaves no truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary or hidden_temporary(path)
    write(tmp)
    os.replace(tmp, path)
    return path


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete the hidden temporaries (`.NAME.tmp.SUFFIX`) that killed `write_atomically` calls left in
    `folder`; returns them."""
    left = sorted(Path(folder).glob(".*.tmp*"))
    for tmp in left:
        logging.getLogger(__name__).info("removing %s, left by an interrupted write", tmp)
        tmp.unlink(missing_ok=True)
    return left


def write_dataset_file(path: Path, data: bytes) -> None:
    """One member file or manifest of a dataset folder, written atomically."""
    write_atomically(path, lambda tmp: tmp.write_bytes(data), dataset_temporary(path))


# --- manifest ------------------------------------------------------------------------------------


def write_manifest(folder: Path, fields: dict) -> None:
    """`manifest.json` of a dataset folder: `fields` (see docs/format.md) after the format's name and
    version, written atomically."""
    manifest = {"tool": "dope_stream", "format_version": FORMAT_VERSION, **fields}
    write_dataset_file(Path(folder) / MANIFEST_NAME, (json.dumps(manifest, indent=1) + "\n").encode())


def parse_json(data: bytes | str | dict, name: str) -> dict:
    """A JSON object from bytes or text; one DopeError naming `name` if it is not one."""
    if isinstance(data, dict):
        return data
    try:
        parsed = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DopeError(f"{name}: not valid JSON ({err})") from None
    if not isinstance(parsed, dict):
        raise DopeError(f"{name}: expected a JSON object at the top level")
    return parsed


def read_manifest(folder: Path) -> dict | None:
    """The manifest of a dataset folder, None if it has none; a newer format version is an error."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return None
    manifest = parse_json(path.read_bytes(), str(path))
    version = manifest.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DopeError(f"{path}: format_version {version!r}; this dope-stream reads versions up to {FORMAT_VERSION}")
    return manifest


def manifest_unit(manifest: dict | None, name: str) -> str | None:
    """The manifest's `units` ("m" or "cm"), None when it declares none."""
    if manifest is None or "units" not in manifest:
        return None
    unit = manifest["units"]
    if not isinstance(unit, str) or unit not in ("m", "cm"):
        raise DopeError(f"{name}: field 'units' must be 'm' or 'cm', got {unit!r}")
    return unit


def manifest_cuboids(manifest: dict | None, name: str) -> dict[str, Cuboid]:
    """Class name -> cuboid (AABB centre + extent in the model frame, metres) from a manifest.

    Accepts `"classes": {name: {"cuboid": {"center", "extent"}}}` or `{name: {"center", "extent"}}`.
    """
    classes = (manifest or {}).get("classes", {})
    if not isinstance(classes, dict):
        raise DopeError(f"{name}: field 'classes' must map class names to their cuboids")
    cuboids = {}
    for class_name, entry in classes.items():
        block = entry.get("cuboid", entry) if isinstance(entry, dict) else None
        try:
            cuboid = Cuboid.from_dict(block)
            values = [*cuboid.center, *cuboid.extent]
            if len(cuboid.center) != 3 or len(cuboid.extent) != 3 or not all(math.isfinite(v) for v in values):
                raise ValueError
            cuboids[class_name] = cuboid
        except (KeyError, TypeError, ValueError, OverflowError):
            raise DopeError(f"{name}: classes.{class_name}: expected a cuboid with 'center' and 'extent'") from None
    return cuboids
