"""Tiny DOPE datasets drawn with OpenCV for tests: a box with one colour per face at a known pose.

The keypoints come from `dope_stream.geometry.projected_cuboid`; the faces are painted far to near,
so the image's corners are where the annotation says they are.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from dope_stream.geometry import Cuboid, Intrinsics, Pose, projected_cuboid

BOX = Cuboid((0.01, -0.02, 0.03), (0.16, 0.21, 0.07))
# Corner indices of the 6 faces (DOPE order) and a distinct colour for each.
FACES = ((0, 1, 2, 3), (4, 5, 6, 7), (0, 3, 7, 4), (1, 2, 6, 5), (0, 1, 5, 4), (3, 2, 6, 7))
FACE_COLOURS = ((220, 40, 40), (40, 200, 40), (40, 60, 220), (230, 210, 30), (200, 40, 200), (30, 200, 210))


def random_pose(rng: np.random.Generator, depth: float = 0.6) -> Pose:
    rotation = Rotation.from_euler("xyz", rng.uniform(-0.7, 0.7, 3)).as_matrix()
    translation = np.array([rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05), depth])
    return Pose(rotation, translation)


def draw_frame(rng: np.random.Generator, size: int = 128, class_name: str = "toy_box") -> tuple[np.ndarray, dict]:
    """(RGB image, canonical annotation) of one box on a noisy background."""
    intrinsics = Intrinsics.from_fov(size, size, 50.0)
    pose = random_pose(rng, depth=rng.uniform(0.45, 0.6))
    points = projected_cuboid(BOX, pose, intrinsics)
    image = rng.integers(60, 120, (size, size, 3), dtype=np.uint8)
    corners_cam = pose.apply(BOX.keypoints()[:8])
    order = sorted(range(6), key=lambda f: -corners_cam[list(FACES[f]), 2].mean())
    for f in order:
        polygon = np.round(points[list(FACES[f])] * 16).astype(np.int32)  # 4 fractional bits
        cv2.fillConvexPoly(image, polygon, FACE_COLOURS[f], lineType=cv2.LINE_AA, shift=4)
    annotation = {
        "camera_data": intrinsics.to_json(),
        "objects": [{
            "class": class_name, "name": f"{class_name}_0",
            "location": pose.translation.tolist(), "quaternion_xyzw": pose.quaternion_xyzw.tolist(),
            "projected_cuboid": points.tolist(), "visibility": 1.0,
        }],
    }
    return image, annotation


def encode_png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()


def write_folder(folder: Path, count: int, seed: int = 0, size: int = 128, manifest: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        image, annotation = draw_frame(rng, size)
        (folder / f"{i:06d}.png").write_bytes(encode_png(image))
        (folder / f"{i:06d}.json").write_text(json.dumps(annotation))
    if manifest:
        (folder / "manifest.json").write_text(json.dumps({"units": "m", "classes": {"toy_box": BOX.to_dict()}}))
    return folder


def write_shards(folder: Path, count: int, per_shard: int, seed: int = 0, size: int = 128) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for shard_index, start in enumerate(range(0, count, per_shard)):
        with tarfile.open(folder / f"shard-{shard_index:06d}.tar", "w") as tar:
            for i in range(start, min(count, start + per_shard)):
                image, annotation = draw_frame(rng, size)
                for ext, data in (("png", encode_png(image)), ("json", json.dumps(annotation).encode())):
                    info = tarfile.TarInfo(f"{i:06d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    (folder / "manifest.json").write_text(json.dumps({"units": "m", "classes": {"toy_box": BOX.to_dict()}}))
    return folder
