"""`dope generate --layout bop`: generated frames as a BOP dataset (see `dope_stream.bop`).

```
OUT/camera.json, OUT/models/obj_000001.ply (mm) + models_info.json, OUT/manifest.json
OUT/train_pbr/000000/rgb/000000.png, depth/000000.png (uint16 mm, depth_scale 1),
    mask/000000_000000.png (the instance's full silhouette), mask_visib/000000_000000.png,
    scene_gt.json, scene_camera.json, scene_gt_info.json
```
Frame i is image i % 1000 of scene i // 1000; target instance k of a frame is ground truth k. Target
class c (in `obj` order) is obj_id c + 1; its symmetries come from a `model_info.json` beside the mesh
(the reference's convention) when there is one. Full silhouettes are the mesh's triangles projected
at the instance's pose; visible masks are the renderer's instance ids.

Resume: frame files are written first, each atomically, and the scene tables (rewritten atomically
every SAVE_EVERY frames and at the end) list the finished frames: a frame is done when its scene's
scene_gt.json lists it and its rgb file exists.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from .assets import MeshAsset, load_targets, target_class_names
from .exchange import write_atomically
from .bop import (
    GENERATED_SPLIT, MODELS_FOLDER, MODELS_INFO, SCENE_FILES, camera_to_bop, models_info_entry, pose_to_bop,
    scene_and_image,
)
from .config import GenerateConfig
from .geometry import Intrinsics, Pose, project_points
from .symmetry import read_symmetries
from .synth import Sample

log = logging.getLogger(__name__)

SAVE_EVERY = 50  # frames between rewrites of the scene tables (each rewrite holds the whole scene)
NO_BOX = [-1, -1, -1, -1]


def write_bytes(path: Path, data: bytes) -> None:
    write_atomically(path, lambda tmp: tmp.write_bytes(data))


def write_json(path: Path, content: object) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(content, indent=1)))


def missing_frames(out: Path, config: GenerateConfig) -> list[int]:
    """Frames of `config` that the BOP dataset in `out` does not list as finished."""
    listed: dict[int, set[str]] = {}
    missing = []
    for index in range(config.nb_frames):
        scene_id, im_id = scene_and_image(index)
        if scene_id not in listed:
            path = out / GENERATED_SPLIT / f"{scene_id:06d}" / "scene_gt.json"
            listed[scene_id] = set(json.loads(path.read_text())) if path.is_file() else set()
        rgb = out / GENERATED_SPLIT / f"{scene_id:06d}" / "rgb" / f"{im_id:06d}.{config.image_format}"
        if str(im_id) not in listed[scene_id] or not rgb.is_file():
            missing.append(index)
    return missing


class BopWriter:
    """Writes each frame's BOP files as it arrives, and the scene tables every SAVE_EVERY frames."""

    def __init__(self, out: Path, config: GenerateConfig, write_manifest: Callable[[], None]):
        self.out, self.config, self.write_manifest = out, config, write_manifest
        self.meshes = load_targets(config)
        self.obj_ids = {name: i + 1 for i, name in enumerate(target_class_names(config))}
        self.tables: dict[int, dict[str, dict]] = {}  # scene_id -> file name -> {str(im_id): entry}
        self.unsaved = 0
        self._write_models()
        write_manifest()

    def _write_models(self) -> None:
        import trimesh

        info = {}
        for (name, mesh), path in zip(self.meshes.items(), self.config.obj):
            obj_id = self.obj_ids[name]
            beside = Path(path).parent / "model_info.json"
            symmetries = read_symmetries(beside)[""] if beside.is_file() else None
            info[str(obj_id)] = models_info_entry(mesh.vertices, symmetries)
            ply = trimesh.Trimesh(mesh.vertices.astype(np.float64) * 1000.0, mesh.faces, process=False).export(file_type="ply")
            write_bytes(self.out / MODELS_FOLDER / f"obj_{obj_id:06d}.ply", ply)
        write_json(self.out / MODELS_FOLDER / MODELS_INFO, info)

    def add(self, sample: Sample) -> None:
        scene_id, im_id = scene_and_image(sample.index)
        folder = self.out / GENERATED_SPLIT / f"{scene_id:06d}"
        annotation = json.loads(sample.members["json"])
        intrinsics = Intrinsics.from_json(annotation["camera_data"])
        if sample.index == 0 or not (self.out / "camera.json").is_file():
            write_json(self.out / "camera.json", _camera_json(intrinsics))
        write_bytes(folder / "rgb" / f"{im_id:06d}.{self.config.image_format}", sample.members[self.config.image_format])
        write_bytes(folder / "depth" / f"{im_id:06d}.png", sample.members["depth.png"])
        instance_id = cv2.imdecode(np.frombuffer(sample.members["seg.png"], np.uint8), cv2.IMREAD_UNCHANGED)
        depth = cv2.imdecode(np.frombuffer(sample.members["depth.png"], np.uint8), cv2.IMREAD_UNCHANGED)
        gt, gt_info = [], []
        for index, obj in enumerate(annotation["objects"]):
            pose = Pose.from_quaternion_xyzw(obj["quaternion_xyzw"], obj["location"])
            visible = instance_id == obj["segmentation_id"]
            full = silhouette(self.meshes[obj["class"]], pose, intrinsics) | visible
            write_bytes(folder / "mask" / f"{im_id:06d}_{index:06d}.png", _png(full))
            write_bytes(folder / "mask_visib" / f"{im_id:06d}_{index:06d}.png", _png(visible))
            gt.append({**pose_to_bop(pose), "obj_id": self.obj_ids[obj["class"]]})
            gt_info.append(_gt_info(full, visible, depth, self.meshes[obj["class"]], pose, intrinsics))
        tables = self._scene_tables(scene_id)
        for name, entry in zip(SCENE_FILES, (gt, camera_to_bop(intrinsics), gt_info)):
            tables[name][str(im_id)] = entry
        self.unsaved += 1
        if self.unsaved >= SAVE_EVERY:
            self._save()

    def close(self) -> None:
        self._save()

    def _scene_tables(self, scene_id: int) -> dict[str, dict]:
        """The scene's tables, starting from the files a previous run left."""
        if scene_id not in self.tables:
            folder = self.out / GENERATED_SPLIT / f"{scene_id:06d}"
            self.tables[scene_id] = {
                name: json.loads((folder / name).read_text()) if (folder / name).is_file() else {} for name in SCENE_FILES
            }
        return self.tables[scene_id]

    def _save(self) -> None:
        for scene_id, tables in self.tables.items():
            folder = self.out / GENERATED_SPLIT / f"{scene_id:06d}"
            for name, table in tables.items():
                write_json(folder / name, {k: table[k] for k in sorted(table, key=int)})
        self.unsaved = 0
        self.write_manifest()


SUPERSAMPLE = 5  # odd: every pixel centre is the centre of one fine pixel


def silhouette(mesh: MeshAsset, pose: Pose, intrinsics: Intrinsics) -> np.ndarray:
    """(H, W) bool: pixels whose centre the mesh covers at `pose` with nothing in front.

    OpenCV fills every pixel a polygon touches, which would add a rim of about a pixel; the triangles
    are filled at SUPERSAMPLE times the resolution and sampled at the pixel centres instead.
    """
    f = SUPERSAMPLE
    mask = np.zeros((intrinsics.height * f, intrinsics.width * f), np.uint8)
    points = pose.apply(mesh.vertices.astype(np.float64))
    in_front = points[:, 2] > 1e-6
    triangles = mesh.faces[in_front[mesh.faces].all(axis=1)]
    if len(triangles):
        fine = f * (project_points(points, intrinsics) + 0.5) - 0.5
        polygons = np.round(fine[triangles] * 16).astype(np.int32)  # 4 fractional bits
        cv2.fillPoly(mask, list(polygons), 1, lineType=cv2.LINE_8, shift=4)
    return mask[f // 2::f, f // 2::f].astype(bool)


def _png(mask: np.ndarray) -> bytes:
    return cv2.imencode(".png", mask.astype(np.uint8) * 255)[1].tobytes()


def _box(mask: np.ndarray) -> list[int]:
    """[x, y, width, height] of a mask's pixels, or [-1, -1, -1, -1] for an empty one."""
    if not mask.any():
        return NO_BOX
    columns, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    return [int(columns[0]), int(rows[0]), int(columns[-1] - columns[0] + 1), int(rows[-1] - rows[0] + 1)]


def _gt_info(full: np.ndarray, visible: np.ndarray, depth: np.ndarray, mesh: MeshAsset, pose: Pose,
             intrinsics: Intrinsics) -> dict:
    """A scene_gt_info.json entry; `bbox_obj` is the projected mesh's box, beyond the image if need be."""
    uv = project_points(pose.apply(mesh.vertices.astype(np.float64)), intrinsics)
    low, high = np.floor(uv.min(axis=0)).astype(int), np.ceil(uv.max(axis=0)).astype(int)
    all_count, visible_count = int(full.sum()), int(visible.sum())
    return {
        "bbox_obj": [int(low[0]), int(low[1]), int(high[0] - low[0] + 1), int(high[1] - low[1] + 1)],
        "bbox_visib": _box(visible),
        "px_count_all": all_count,
        "px_count_valid": int((full & (depth > 0)).sum()),
        "px_count_visib": visible_count,
        "visib_fract": visible_count / all_count if all_count else 0.0,
    }


def _camera_json(intrinsics: Intrinsics) -> dict:
    return {"cx": intrinsics.cx, "cy": intrinsics.cy, "fx": intrinsics.fx, "fy": intrinsics.fy,
            "width": intrinsics.width, "height": intrinsics.height, "depth_scale": 1.0}
