"""The BOP format (bop_toolkit's `docs/bop_datasets_format.md`): reading datasets, pose/camera
conversions and the result CSV. Millimetres in BOP files, metres everywhere else (converted here).

Layout of a dataset root:
```
camera.json                      cx, cy, fx, fy, width, height, depth_scale
models/models_info.json          per obj_id: diameter, min_x/y/z, size_x/y/z, symmetries (mm)
models/obj_000001.ply            meshes in millimetres
test_targets_bop19.json          (test sets) [{scene_id, im_id, obj_id, inst_count}]
<split>/<scene_id:06d>/rgb/<im_id:06d>.png|jpg, depth/, mask/, mask_visib/ (<im_id>_<gt_index>.png)
<split>/<scene_id:06d>/scene_gt.json, scene_camera.json, scene_gt_info.json   keyed by str(im_id)
```
`scene_gt` entries: `cam_R_m2c` (9 numbers, row-major), `cam_t_m2c` (mm), `obj_id`; `scene_camera`:
`cam_K` (9, row-major), `depth_scale` (depth pixel * depth_scale = mm). A BOP object is the class
`obj_{obj_id:06d}` (its model file's stem). `index_bop` turns every image into the canonical
annotation of `dope_stream.reader` (location, quaternion, projected cuboid, visibility), so shards,
DOPE folders and BOP datasets train and evaluate alike.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .exchange import write_atomically
from .errors import DopeError
from .geometry import Cuboid, Intrinsics, Pose, projected_cuboid
from .symmetry import MM, Symmetries, bop_class_name

log = logging.getLogger(__name__)

FRAMES_PER_SCENE = 1000  # BOP's PBR training scenes hold 1000 images each
GENERATED_SPLIT = "train_pbr"
MODELS_FOLDER = "models"
MODELS_INFO = "models_info.json"
TEST_TARGETS = "test_targets_bop19.json"
SCENE_FILES = ("scene_gt.json", "scene_camera.json", "scene_gt_info.json")
RGB_SUFFIXES = (".png", ".jpg")
RESULT_COLUMNS = ("scene_id", "im_id", "obj_id", "score", "R", "t", "time")


# --- conversions ---------------------------------------------------------------------------------


def pose_to_bop(pose: Pose) -> dict:
    return {"cam_R_m2c": pose.rotation.ravel().tolist(), "cam_t_m2c": (pose.translation / MM).tolist()}


def pose_from_bop(entry: dict, where: str) -> Pose:
    try:
        rotation = np.asarray(entry["cam_R_m2c"], dtype=np.float64).reshape(3, 3)
        translation = np.asarray(entry["cam_t_m2c"], dtype=np.float64).reshape(3) * MM
    except (KeyError, TypeError, ValueError):
        raise DopeError(f"{where}: expected cam_R_m2c (9 numbers) and cam_t_m2c (3 numbers, mm)") from None
    return Pose(rotation, translation)


def camera_to_bop(intrinsics: Intrinsics, depth_scale: float = 1.0) -> dict:
    return {"cam_K": intrinsics.matrix.ravel().tolist(), "depth_scale": depth_scale}


def intrinsics_from_bop(entry: dict, width: int, height: int, where: str) -> Intrinsics:
    try:
        k = np.asarray(entry["cam_K"], dtype=np.float64).reshape(3, 3)
    except (KeyError, TypeError, ValueError):
        raise DopeError(f"{where}: expected cam_K (9 numbers, row-major)") from None
    return Intrinsics(k[0, 0], k[1, 1], k[0, 2], k[1, 2], width, height)


def models_info_entry(vertices_m: np.ndarray, symmetries: Symmetries | None) -> dict:
    """One object's models_info.json entry (millimetres) from its vertices in metres."""
    points = np.asarray(vertices_m, dtype=np.float64) / MM
    low, size = points.min(axis=0), np.ptp(points, axis=0)
    entry = {"diameter": _diameter(points)}
    entry.update({f"min_{a}": float(v) for a, v in zip("xyz", low)})
    entry.update({f"size_{a}": float(v) for a, v in zip("xyz", size)})
    if symmetries is not None and symmetries.symmetric:
        entry["symmetries_discrete"] = [_transform_in_mm(t).ravel().tolist() for t in symmetries.discrete]
        entry["symmetries_continuous"] = [{"axis": a.tolist(), "offset": (o / MM).tolist()} for a, o in symmetries.continuous]
    return entry


def _transform_in_mm(transform: np.ndarray) -> np.ndarray:
    scaled = transform.copy()
    scaled[:3, 3] /= MM
    return scaled


def _diameter(points: np.ndarray) -> float:
    """Largest distance between two model points (over the convex hull's vertices)."""
    from scipy.spatial import ConvexHull, QhullError
    from scipy.spatial.distance import pdist

    try:
        points = points[ConvexHull(points).vertices]
    except (QhullError, ValueError):  # flat or tiny meshes: all points
        pass
    return float(pdist(points).max()) if len(points) > 1 else 0.0


def cuboid_from_models_info(entry: dict, where: str) -> Cuboid:
    """The AABB cuboid (metres) of a models_info.json entry."""
    try:
        low = np.array([entry[f"min_{a}"] for a in "xyz"], dtype=np.float64) * MM
        size = np.array([entry[f"size_{a}"] for a in "xyz"], dtype=np.float64) * MM
    except (KeyError, TypeError, ValueError):
        raise DopeError(f"{where}: each object needs min_x/y/z and size_x/y/z (mm)") from None
    return Cuboid(tuple(low + size / 2), tuple(size))


def scene_and_image(index: int) -> tuple[int, int]:
    """Frame index of a generated dataset -> (scene_id, im_id)."""
    return divmod(index, FRAMES_PER_SCENE)


# --- reading datasets ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BopImage:
    """One image of a BOP dataset with its annotation in this project's canonical form."""

    scene_id: int
    im_id: int
    rgb: Path
    annotation: dict  # camera_data + objects (class, location m, quaternion_xyzw, projected_cuboid, visibility)
    targets: frozenset[str] | None = None  # test sets: the classes evaluated in this image (BOP19 targets)

    @property
    def key(self) -> str:
        return f"{self.scene_id:06d}_{self.im_id:06d}"


@dataclass(frozen=True)
class BopDataset:
    root: Path  # the folder holding models/ and camera.json
    images: list[BopImage]
    cuboids: dict[str, Cuboid]
    symmetries: dict[str, Symmetries]
    models_info: Path


def is_bop(path: Path) -> bool:
    """A BOP dataset root, split or scene (it or its children hold scene_gt.json, or models_info)."""
    path = Path(path)
    if not path.is_dir():
        return False
    return (
        (path / "scene_gt.json").is_file()
        or (path / MODELS_FOLDER / MODELS_INFO).is_file()
        or any((child / "scene_gt.json").is_file() for child in path.iterdir() if child.is_dir())
    )


def scene_folders(path: Path) -> tuple[Path, list[Path]]:
    """(dataset root, scene folders) for a root (all its splits), a split or one scene."""
    path = Path(path)
    if (path / "scene_gt.json").is_file():
        return path.parent.parent, [path]
    scenes = sorted(p for p in path.iterdir() if (p / "scene_gt.json").is_file())
    if scenes:
        return path.parent, scenes
    return path, sorted(p for p in path.glob("*/*") if (p / "scene_gt.json").is_file())


def read_json(path: Path) -> object:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DopeError(f"{path}: missing (a BOP dataset needs it)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DopeError(f"{path}: not valid JSON ({err})") from None


def read_models_info(root: Path) -> tuple[Path, dict[int, dict]]:
    for folder in (MODELS_FOLDER, "models_eval"):
        path = Path(root) / folder / MODELS_INFO
        if path.is_file():
            content = read_json(path)
            if not isinstance(content, dict) or not all(str(k).isdigit() for k in content):
                raise DopeError(f"{path}: expected an object keyed by obj_id")
            return path, {int(k): v for k, v in content.items()}
    raise DopeError(f"{root}: no {MODELS_FOLDER}/{MODELS_INFO} (BOP datasets describe their objects there)")


def read_test_targets(root: Path) -> dict[tuple[int, int], set[int]] | None:
    """(scene_id, im_id) -> obj_ids to evaluate, from test_targets_bop19.json (None if absent)."""
    path = Path(root) / TEST_TARGETS
    if not path.is_file():
        return None
    targets: dict[tuple[int, int], set[int]] = {}
    try:
        for entry in read_json(path):
            targets.setdefault((int(entry["scene_id"]), int(entry["im_id"])), set()).add(int(entry["obj_id"]))
    except (KeyError, TypeError, ValueError):
        raise DopeError(f"{path}: expected a list of {{scene_id, im_id, obj_id, inst_count}}") from None
    return targets


def index_bop(path: Path) -> BopDataset:
    """Every annotated image of a BOP dataset root, split or scene (test sets: only the images
    and objects listed in test_targets_bop19.json)."""
    root, scenes = scene_folders(Path(path))
    if not scenes:
        raise DopeError(f"{path}: no BOP scenes (folders with scene_gt.json)")
    info_path, models_info = read_models_info(root)
    cuboids = {bop_class_name(i): cuboid_from_models_info(e, f"{info_path} (object {i})") for i, e in models_info.items()}
    symmetries = {bop_class_name(i): Symmetries.from_dict(e, MM, f"{info_path} (object {i})") for i, e in models_info.items()}
    targets = read_test_targets(root)
    images = []
    for scene in scenes:
        images.extend(_scene_images(scene, cuboids, targets))
    if not images:
        raise DopeError(f"{path}: no annotated images with rgb/ files")
    log.info("BOP dataset %s: %d images in %d scenes", root, len(images), len(scenes))
    return BopDataset(root, images, cuboids, symmetries, info_path)


def _scene_images(scene: Path, cuboids: dict[str, Cuboid], targets: dict | None) -> list[BopImage]:
    scene_id = int(scene.name) if scene.name.isdigit() else 0
    gt, camera = read_json(scene / "scene_gt.json"), read_json(scene / "scene_camera.json")
    gt_info = read_json(scene / "scene_gt_info.json") if (scene / "scene_gt_info.json").is_file() else {}
    size = _image_size(scene)
    images = []
    for im_key in sorted(gt, key=int):
        im_id = int(im_key)
        if targets is not None and (scene_id, im_id) not in targets:
            continue
        rgb = next((scene / "rgb" / f"{im_id:06d}{s}" for s in RGB_SUFFIXES if (scene / "rgb" / f"{im_id:06d}{s}").is_file()), None)
        if rgb is None:
            continue
        where = f"{scene}/scene_camera.json[{im_key}]"
        if im_key not in camera:
            raise DopeError(f"{where}: image {im_id} has no camera")
        intrinsics = intrinsics_from_bop(camera[im_key], *size(rgb), where)
        wanted = None if targets is None else targets[(scene_id, im_id)]
        objects = []
        for index, entry in enumerate(gt[im_key]):
            obj_id = int(entry["obj_id"])
            name = bop_class_name(obj_id)
            if name not in cuboids:
                raise DopeError(f"{scene}/scene_gt.json[{im_key}]: obj_id {obj_id} is not in models_info.json")
            if wanted is not None and obj_id not in wanted:
                continue
            pose = pose_from_bop(entry, f"{scene}/scene_gt.json[{im_key}][{index}]")
            info = gt_info.get(im_key, [{}] * (index + 1))[index]
            objects.append({
                "class": name, "name": f"{name}_{index}", "gt_index": index, "obj_id": obj_id,
                "location": pose.translation.tolist(), "quaternion_xyzw": pose.quaternion_xyzw.tolist(),
                "projected_cuboid": projected_cuboid(cuboids[name], pose, intrinsics).tolist(),
                "visibility": float(info.get("visib_fract", 1.0)),
                **{key: int(info[key]) for key in ("px_count_visib", "px_count_all") if key in info},
            })
        annotation = {"camera_data": intrinsics.to_json(), "objects": objects, "scene_id": scene_id, "im_id": im_id}
        chosen = None if wanted is None else frozenset(bop_class_name(i) for i in wanted)
        images.append(BopImage(scene_id, im_id, rgb, annotation, chosen))
    return images


def _image_size(scene: Path):
    """Image size per rgb file: camera.json's at the dataset root, else read once per scene."""
    camera = scene.parent.parent / "camera.json"
    if camera.is_file():
        content = read_json(camera)
        if isinstance(content, dict) and "width" in content and "height" in content:
            size = (int(content["width"]), int(content["height"]))
            return lambda rgb: size
    found: dict[str, tuple[int, int]] = {}

    def size_of(rgb: Path) -> tuple[int, int]:
        if "size" not in found:
            import cv2

            image = cv2.imread(str(rgb), cv2.IMREAD_UNCHANGED)
            if image is None:
                raise DopeError(f"{rgb}: cannot be read as an image")
            found["size"] = (image.shape[1], image.shape[0])
        return found["size"]

    return size_of


# --- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BopResult:
    """One pose estimate as bop_toolkit scores it."""

    scene_id: int
    im_id: int
    obj_id: int
    score: float
    pose: Pose  # metres here; millimetres in the file
    time: float = -1.0  # seconds for the whole image; -1: unknown

    def row(self) -> list[str]:
        return [
            str(self.scene_id), str(self.im_id), str(self.obj_id), f"{self.score:.6f}",
            " ".join(f"{v:.9f}" for v in self.pose.rotation.ravel()),
            " ".join(f"{v:.6f}" for v in self.pose.translation / MM), f"{self.time:.6f}",
        ]


def write_results_csv(path: Path, results: list[BopResult]) -> Path:
    """The BOP result file (`scene_id,im_id,obj_id,score,R,t,time`; R row-major, t in mm), atomically."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as stream:
            writer = csv.writer(stream, lineterminator="\n")
            writer.writerow(RESULT_COLUMNS)
            writer.writerows(r.row() for r in results)

    return write_atomically(Path(path), write)


def read_results_csv(path: Path) -> list[BopResult]:
    path = Path(path)
    if not path.is_file():
        raise DopeError(f"{path}: BOP result file does not exist")
    results = []
    with open(path, newline="") as stream:
        reader = csv.reader(stream)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != RESULT_COLUMNS:
            raise DopeError(f"{path}: the first line must be {','.join(RESULT_COLUMNS)}")
        for line, row in enumerate(reader, start=2):
            try:
                rotation = np.array(row[4].split(), dtype=np.float64).reshape(3, 3)
                translation = np.array(row[5].split(), dtype=np.float64).reshape(3) * MM
                results.append(BopResult(int(row[0]), int(row[1]), int(row[2]), float(row[3]),
                                         Pose(rotation, translation), float(row[6])))
            except (IndexError, ValueError):
                raise DopeError(f"{path}:{line}: expected scene_id,im_id,obj_id,score,R (9 numbers),t (3 numbers),time") from None
    return results
