"""Read DOPE datasets: WebDataset shards and DOPE folders, in every JSON variant.

Two layers:
- *raw samples*: WebDataset-style dicts `{"__key__": str, "__url__": str, "jpg"|"png": bytes,
  "json": bytes, ...}` (plus `seg.png`, `depth.png` when present). `open_dataset(paths)` indexes
  local shards (`*.tar`, random access by member offset), DOPE folders (`000123.png|jpg` next to
  `000123.json`, searched recursively) and BOP datasets (`dope_stream.bop`: each image's tables
  converted to the canonical JSON, metres) into a `LocalDataset` (a sequence of raw samples);
  `iter_raw_samples(paths)` also streams URLs/brace patterns through the webdataset library. The live
  stream (`dope_stream.stream`) yields the same dicts, fresh frames with their members decoded
  (arrays, the annotation dict: `dope_stream.exchange`), which `decode_sample` takes as they are.
- *frames*: `decode_sample(sample, unit) -> Frame`, an RGB uint8 image plus the canonical annotation.

Canonical annotation (this project's / NVISII JSON): metres, `projected_cuboid` with 9 points (the
8 corners in DOPE order, then the centroid), `visibility` a fraction in 0..1. Accepted variants:
- NVISII and this project: already canonical (metres).
- NDDS / FAT: centimetres, 8-point `projected_cuboid` plus `projected_cuboid_centroid`.
- BlenderProc: centimetres, `visibility` is a count of visible pixels.

Units (only `location` is affected; pixel coordinates carry no unit) are decided in this order:
1. the dataset's `manifest.json` key `"units"` ("m" or "cm"; `dope generate` writes "m");
2. the caller's declaration (`unit="m"|"cm"`, `dope train --unit`);
3. the file's own top-level `"units"` key (`dope infer` writes "m" in every prediction: one false
   detection far away must not make a whole file read as centimetres);
4. detection per file (`unit="auto"`): centimetres if any object has `projected_cuboid_centroid`
   (NDDS/FAT), a `visibility` above 1 (BlenderProc pixel count) or a `location` farther than 20
   units from the camera (no dataset places objects 20 m away; in cm they are typically 30-200);
   metres otherwise.

A visibility above 1 is read as a pixel count: the fraction is `px_count_visib / px_count_all`
when the latter is present, else 1.0 (the object is visible, by how much is unknown).
"""

from __future__ import annotations

import glob
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from .bop import BopDataset, index_bop, is_bop
from .completeness import check_against_manifest
from .config import check_focal_lengths
from .errors import DopeError
from .exchange import (
    ANNOTATION_MEMBER, IMAGE_MEMBERS, IMAGE_SUFFIXES, LAYER_MEMBERS, MANIFEST_NAME, SHARD_SUFFIXES, decode_image_member,
    manifest_cuboids, manifest_unit, parse_json, read_manifest, shard_member_offsets,
)
from .geometry import NUM_KEYPOINTS, Cuboid, Intrinsics

log = logging.getLogger(__name__)

Unit = Literal["m", "cm", "auto"]
METRES_PER_UNIT = {"m": 1.0, "cm": 0.01}
FARTHEST_PLAUSIBLE_METRES = 20.0


@dataclass
class ObjectAnnotation:
    """One annotated instance in canonical form."""

    class_name: str
    projected_cuboid: np.ndarray  # (9, 2) float64 pixels (u, v), DOPE order, centroid last
    visibility: float  # fraction of the instance's pixels that are visible, 0..1
    name: str = ""
    location: np.ndarray | None = None  # (3,) metres, camera frame, model-frame origin
    quaternion_xyzw: np.ndarray | None = None  # model -> camera rotation


@dataclass
class Frame:
    """A decoded sample: the image and its canonical annotation."""

    key: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    objects: list[ObjectAnnotation]
    intrinsics: Intrinsics | None = None
    source: str = ""  # file name used in error messages
    annotation: dict = field(default_factory=dict)  # the canonical JSON (see module docstring)


# --- decoding ------------------------------------------------------------------------------------


def sample_name(sample: dict) -> str:
    """A human-readable location of a raw sample for error messages."""
    url = sample.get("__url__", "")
    key = sample.get("__key__", "?")
    return f"{url}:{key}" if url else str(key)


def decode_sample(sample: dict, unit: Unit = "auto") -> Frame:
    """Raw sample dict -> Frame with canonical annotation. Raises DopeError naming the file."""
    name = sample_name(sample)
    if "json" not in sample:
        raise DopeError(f"{name}: sample has no .json annotation")
    raw = parse_json(sample["json"], f"{name}.json")
    annotation = canonical_annotation(raw, unit, f"{name}.json")
    intrinsics = camera_intrinsics(annotation["camera_data"], f"{name}.json")
    image = decode_image(sample, name)
    check_image_size(image, annotation["camera_data"], name)
    objects = [_object_from_canonical(o) for o in annotation["objects"]]
    return Frame(sample["__key__"], image, objects, intrinsics, name, annotation)


def camera_intrinsics(camera_data: dict, where: str) -> Intrinsics | None:
    """The camera of a `camera_data` block (None without `intrinsics`); DopeError naming `where`."""
    if not isinstance(camera_data, dict):
        raise DopeError(f"{where}: field 'camera_data' must be an object")
    if "intrinsics" not in camera_data:
        return None
    try:
        intrinsics = Intrinsics.from_json(camera_data)
    except (KeyError, TypeError, ValueError, OverflowError):
        raise DopeError(f"{where}: camera_data needs width, height and intrinsics {{fx, fy, cx, cy}} as numbers") from None
    try:
        check_focal_lengths((intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy))
    except ValueError as err:
        raise DopeError(f"{where}: camera_data.intrinsics: {err}") from None
    return intrinsics


def check_image_size(image: np.ndarray, camera_data: dict, name: str) -> None:
    """The image must have the size its annotation was made for, else every keypoint is misplaced."""
    width, height = camera_data.get("width"), camera_data.get("height")
    if not isinstance(width, int) or not isinstance(height, int):
        return  # no size declared (some NDDS exports): nothing to compare
    if (image.shape[1], image.shape[0]) != (width, height):
        raise DopeError(
            f"{name}: image is {image.shape[1]}x{image.shape[0]} pixels but the camera_data of {name}.json says "
            f"{width}x{height}; its keypoints would not match the pixels"
        )


def decode_image(sample: dict, name: str) -> np.ndarray:
    ext = next((e for e in IMAGE_MEMBERS if e in sample), None)
    if ext is None:
        raise DopeError(f"{name}: sample has no image (expected one of {', '.join(IMAGE_MEMBERS)})")
    image = decode_image_member(sample[ext])  # bytes, or already decoded (the live stream)
    if image is None:
        raise DopeError(f"{name}.{ext}: image cannot be decoded")
    return image


def detect_unit(raw: dict) -> Literal["m", "cm"]:
    """The length unit of one annotation file: its "units" key, else a guess (module docstring)."""
    units = raw.get("units")
    if isinstance(units, str) and units in METRES_PER_UNIT:  # any JSON value may stand there (a list is unhashable)
        return units
    for obj in raw.get("objects", []):
        if not isinstance(obj, dict):
            continue
        if "projected_cuboid_centroid" in obj:
            return "cm"
        visibility = obj.get("visibility")
        if isinstance(visibility, (int, float)) and visibility > 1:
            return "cm"
        location = obj.get("location")
        if (isinstance(location, list) and len(location) == 3 and all(isinstance(v, (int, float)) for v in location)
                and np.linalg.norm(np.asarray(location, dtype=np.float64)) > FARTHEST_PLAUSIBLE_METRES):
            return "cm"
    return "m"


def canonical_annotation(raw: dict, unit: Unit, name: str) -> dict:
    """Any supported JSON variant -> canonical dict (metres, 9 points, visibility fraction)."""
    if "objects" not in raw:
        raise DopeError(f"{name}: missing field 'objects'")
    if not isinstance(raw["objects"], list):
        raise DopeError(f"{name}: field 'objects' must be a list")
    resolved = detect_unit(raw) if unit == "auto" else unit
    if resolved not in METRES_PER_UNIT:
        raise DopeError(f"{name}: unknown unit {unit!r} (expected m, cm or auto)")
    scale = METRES_PER_UNIT[resolved]
    objects = [_canonical_object(obj, scale, f"{name}: objects[{i}]") for i, obj in enumerate(raw["objects"])]
    camera_data = raw.get("camera_data", {})
    if not isinstance(camera_data, dict):
        raise DopeError(f"{name}: field 'camera_data' must be an object")
    return {"camera_data": camera_data, "objects": objects}


def _canonical_object(obj: dict, scale: float, where: str) -> dict:
    if not isinstance(obj, dict):
        raise DopeError(f"{where}: expected a JSON object")
    if not isinstance(obj.get("class"), str):
        raise DopeError(f"{where}.class: missing or not a string")
    out = {"class": obj["class"], "name": str(obj.get("name", obj["class"]))}
    out["projected_cuboid"] = _nine_points(obj, where).tolist()
    out["visibility"] = _visibility_fraction(obj, where)
    if "location" in obj:
        out["location"] = (_float_array(obj["location"], (3,), f"{where}.location") * scale).tolist()
    if "quaternion_xyzw" in obj:
        out["quaternion_xyzw"] = _float_array(obj["quaternion_xyzw"], (4,), f"{where}.quaternion_xyzw").tolist()
    for key in ("px_count_visib", "px_count_all", "bounding_box_minx_maxx_miny_maxy"):
        if key in obj:
            out[key] = obj[key]
    return out


def _nine_points(obj: dict, where: str) -> np.ndarray:
    if "projected_cuboid" not in obj:
        raise DopeError(f"{where}.projected_cuboid: missing")
    points = _float_array(obj["projected_cuboid"], None, f"{where}.projected_cuboid")
    if points.shape == (8, 2):
        if "projected_cuboid_centroid" not in obj:
            raise DopeError(f"{where}.projected_cuboid: has 8 points but no 'projected_cuboid_centroid'")
        centroid = _float_array(obj["projected_cuboid_centroid"], (2,), f"{where}.projected_cuboid_centroid")
        points = np.vstack([points, centroid])
    if points.shape != (NUM_KEYPOINTS, 2):
        raise DopeError(f"{where}.projected_cuboid: expected 9 (or 8 + centroid) [u, v] points, got shape {points.shape}")
    return points


def _visibility_fraction(obj: dict, where: str) -> float:
    value = obj.get("visibility", 1.0)
    if not isinstance(value, (int, float)) or value < 0:
        raise DopeError(f"{where}.visibility: expected a number >= 0, got {value!r}")
    if value <= 1:
        return float(value)
    total = obj.get("px_count_all")
    if isinstance(total, (int, float)) and total > 0:
        return float(min(1.0, value / total))
    return 1.0


def _float_array(value, shape: tuple | None, where: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise DopeError(f"{where}: expected numbers, got {value!r}") from None
    if shape is not None and array.shape != shape:
        raise DopeError(f"{where}: expected shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise DopeError(f"{where}: contains NaN or infinity")
    return array


def _object_from_canonical(obj: dict) -> ObjectAnnotation:
    return ObjectAnnotation(
        class_name=obj["class"],
        projected_cuboid=np.asarray(obj["projected_cuboid"], dtype=np.float64),
        visibility=obj["visibility"],
        name=obj["name"],
        location=np.asarray(obj["location"]) if "location" in obj else None,
        quaternion_xyzw=np.asarray(obj["quaternion_xyzw"]) if "quaternion_xyzw" in obj else None,
    )


def select_objects(frame: Frame, class_name: str | None, min_visibility: float = 0.0) -> list[ObjectAnnotation]:
    """Instances of `class_name` (all classes when None) with visibility above `min_visibility`."""
    return [
        o for o in frame.objects
        if (class_name is None or o.class_name == class_name) and o.visibility > min_visibility
    ]


# --- local datasets (random access) --------------------------------------------------------------


@dataclass(frozen=True)
class MemberRef:
    """Where one member's bytes live: a plain file, or a byte range inside an uncompressed tar."""

    path: str
    offset: int = -1  # -1: the whole file
    size: int = -1

    def read(self) -> bytes:
        with open(self.path, "rb") as f:
            if self.offset < 0:
                return f.read()
            f.seek(self.offset)
            return f.read(self.size)


@dataclass(frozen=True)
class InlineMember:
    """A member held in memory (an annotation converted from another format, e.g. BOP's tables)."""

    data: bytes

    def read(self) -> bytes:
        return self.data


@dataclass
class SampleRef:
    key: str
    url: str
    members: dict[str, MemberRef | InlineMember]

    def load(self) -> dict:
        sample = {"__key__": self.key, "__url__": self.url}
        sample.update({ext: ref.read() for ext, ref in self.members.items()})
        return sample


@dataclass
class LocalDataset(Sequence):
    """Random-access raw samples from local shards and DOPE folders, in a fixed (sorted) order."""

    refs: list[SampleRef]
    unit: Unit = "auto"
    cuboids: dict[str, Cuboid] = field(default_factory=dict)
    manifests: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> dict:
        return self.refs[index].load()

    def frame(self, index: int) -> Frame:
        return decode_sample(self[index], self.unit)

    def classes_present(self, limit: int = 200) -> list[str]:
        """Class names in the manifests, else in the first `limit` annotations."""
        if self.cuboids:
            return sorted(self.cuboids)
        names: set[str] = set()
        for ref in self.refs[:limit]:
            raw = parse_json(ref.members["json"].read(), f"{ref.url}:{ref.key}.json")
            names.update(o.get("class", "?") for o in raw.get("objects", []) if isinstance(o, dict))
        return sorted(names)

    def check_class(self, class_name: str) -> None:
        present = self.classes_present()
        if class_name not in present:
            raise DopeError(f"class '{class_name}' is not in the dataset (classes present: {', '.join(present) or 'none'})")


def open_dataset(paths: Sequence[str | Path], unit: Unit = "auto") -> LocalDataset:
    """Index local shards/folders. `paths`: folders, shard files or glob patterns."""
    refs: list[SampleRef] = []
    cuboids: dict[str, Cuboid] = {}
    manifests: list[dict] = []
    units: set[str] = set()
    for entry in paths:
        if is_bop(Path(entry)):
            dataset = index_bop(Path(entry))
            refs.extend(_bop_refs(dataset))
            cuboids.update(dataset.cuboids)
            units.add("m")  # converted from BOP's millimetres
            continue
        sources = _expand_local(str(entry))
        indexed = {source: _index_tar(source) if source.name.endswith(SHARD_SUFFIXES) else _index_folder(source) for source, _ in sources}
        refs.extend(ref for found in indexed.values() for ref in found)
        manifest_folder = sources[-1][1] if sources else None
        manifest = read_manifest(manifest_folder) if manifest_folder is not None else None
        if manifest is not None:
            manifest_path = manifest_folder / MANIFEST_NAME
            check_against_manifest(manifest, manifest_path, {s: [(r.key, set(r.members)) for r in found] for s, found in indexed.items()})
            manifests.append(manifest)
            cuboids.update(manifest_cuboids(manifest, str(manifest_path)))
            declared = manifest_unit(manifest, str(manifest_path))
            units.update([declared] if declared else [])
    if not refs:
        raise DopeError(f"no images with .json annotations found in {', '.join(map(str, paths))}")
    if len(units) > 1:
        raise DopeError(f"datasets {', '.join(map(str, paths))} declare different units {sorted(units)}")
    resolved: Unit = units.pop() if units else unit
    log.info("dataset: %d samples from %s (unit %s)", len(refs), ", ".join(map(str, paths)), resolved)
    return LocalDataset(refs, resolved, cuboids, manifests)


def _bop_refs(dataset: BopDataset) -> list[SampleRef]:
    return [
        SampleRef(image.key, str(dataset.root), {
            image.rgb.suffix.lstrip("."): MemberRef(str(image.rgb)),
            "json": InlineMember(json.dumps(image.annotation).encode()),
        })
        for image in dataset.images
    ]


def _expand_local(entry: str) -> list[tuple[Path, Path]]:
    """entry -> [(shard file or DOPE folder, folder holding its manifest)]."""
    path = Path(entry)
    if path.is_dir():
        shards = sorted(p for p in path.iterdir() if p.name.endswith(SHARD_SUFFIXES))
        return [(s, path) for s in shards] if shards else [(path, path)]
    if path.is_file():
        if not path.name.endswith(SHARD_SUFFIXES):
            raise DopeError(f"{entry}: not a shard (.tar) or a folder")
        return [(path, path.parent)]
    matches = sorted(Path(p) for p in glob.glob(entry))
    if not matches:
        raise DopeError(f"{entry}: no such file or folder")
    return [(m, m.parent) for m in matches if m.name.endswith(SHARD_SUFFIXES)]


def _index_tar(path: Path) -> list[SampleRef]:
    samples: dict[str, SampleRef] = {}
    for key, member, offset, size in shard_member_offsets(path):
        samples.setdefault(key, SampleRef(key, str(path), {})).members[member] = MemberRef(str(path), offset, size)
    return [s for s in samples.values() if _is_annotated_image(s)]


def _is_annotated_image(sample: SampleRef) -> bool:
    return ANNOTATION_MEMBER in sample.members and any(e in sample.members for e in IMAGE_MEMBERS)


def _index_folder(folder: Path) -> list[SampleRef]:
    """DOPE folder: every `X.png|jpg` with a sibling `X.json`, recursively; `X.*` siblings join it."""
    refs = []
    for image in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        annotation = image.with_suffix(".json")
        if not annotation.is_file():
            continue  # masks, depth maps and other non-annotated images
        stem = image.name[: -len(image.suffix)]
        key = str(image.relative_to(folder).with_suffix(""))
        members = {image.suffix.lower().lstrip("."): MemberRef(str(image)), "json": MemberRef(str(annotation))}
        for extra in LAYER_MEMBERS:
            sibling = image.parent / f"{stem}.{extra}"
            if sibling.is_file():
                members[extra] = MemberRef(str(sibling))
        refs.append(SampleRef(key, str(folder), members))
    return refs


# --- any source, streamed ------------------------------------------------------------------------


def is_remote(entry: str) -> bool:
    return "://" in entry or entry.startswith("pipe:") or "{" in entry


def iter_raw_samples(paths: Sequence[str | Path], unit: Unit = "auto") -> Iterator[dict]:
    """Raw samples from local shards/folders and remote/brace-pattern shards (via webdataset)."""
    local = [p for p in paths if not is_remote(str(p))]
    if local:
        yield from open_dataset(local, unit)
    for url in (str(p) for p in paths if is_remote(str(p))):
        yield from stream_shards(url)


def stream_shards(urls: str | list[str], shardshuffle: bool = False) -> Iterable[dict]:
    """Raw samples from shard URLs or brace patterns, opened by the webdataset library."""
    import webdataset as wds

    return wds.WebDataset(urls, shardshuffle=shardshuffle, empty_check=False)

