"""Symmetry-aware training against plain training on a box with identical opposite faces.

    python benchmarks/bench_symmetry.py [--frames 600] [--steps 400] [--size 96]

Draws a toy dataset of a box whose opposite faces share a colour (so a half turn about any of its
axes gives the same image) in uniformly random orientations, then trains the `light` network twice
with the same seed and data: plainly (corner labels from the annotated pose, which contradict each
other between symmetric views) and with `--symmetries` (labels from the canonical pose). Both are
scored on held-out frames with ADD-S, which does not depend on the labelling: share of frames with
a pose, ADD-S accuracy at 1 and 2 cm, and the validation loss at the end.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from dope_app.environment import passive_openmp_wait

passive_openmp_wait()  # as `dope train` runs (set before torch loads OpenMP)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402

from dope_stream.geometry import CUBOID_EDGES, Cuboid, Intrinsics, Pose, projected_cuboid  # noqa: E402
from infer.config import NetworkOptions  # noqa: E402
from infer.detector import Detector, TorchBackend  # noqa: E402
from infer.evaluate import adds  # noqa: E402
from infer.loading import with_cuboid  # noqa: E402
from trainer.checkpoint import load_model  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.loop import train  # noqa: E402

BOX = Cuboid((0.0, 0.0, 0.0), (0.12, 0.08, 0.05))
# Faces as (corner indices, axis): one colour per axis, so opposite faces look alike.
AXIS_FACES = (((0, 1, 2, 3), 2), ((4, 5, 6, 7), 2), ((0, 3, 7, 4), 0), ((1, 2, 6, 5), 0), ((0, 1, 5, 4), 1), ((3, 2, 6, 7), 1))
COLOURS = ((200, 50, 50), (50, 190, 60), (60, 70, 210))
BATCH = 16


def symmetric_box_frame(rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict]:
    intrinsics = Intrinsics.from_fov(size, size, 50.0)
    pose = Pose(Rotation.random(random_state=rng).as_matrix(), np.array([*rng.uniform(-0.02, 0.02, 2), rng.uniform(0.3, 0.4)]))
    points = projected_cuboid(BOX, pose, intrinsics)
    image = rng.integers(70, 130, (size, size, 3), dtype=np.uint8)
    depth = pose.apply(BOX.keypoints()[:8])[:, 2]
    for corners, axis in sorted(AXIS_FACES, key=lambda face: -depth[list(face[0])].mean()):
        cv2.fillConvexPoly(image, np.round(points[list(corners)] * 16).astype(np.int32), COLOURS[axis], cv2.LINE_AA, 4)
    annotation = {"camera_data": intrinsics.to_json(), "objects": [{
        "class": "sym_box", "name": "sym_box_0", "location": pose.translation.tolist(),
        "quaternion_xyzw": pose.quaternion_xyzw.tolist(), "projected_cuboid": points.tolist(), "visibility": 1.0}]}
    return image, annotation


def write_dataset(folder: Path, frames: int, size: int, seed: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(frames):
        image, annotation = symmetric_box_frame(rng, size)
        cv2.imwrite(str(folder / f"{i:06d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        (folder / f"{i:06d}.json").write_text(json.dumps(annotation))
    (folder / "manifest.json").write_text(json.dumps({"units": "m", "classes": {"sym_box": BOX.to_dict()}}))
    return folder


def half_turns_file(path: Path) -> Path:
    """The box's symmetries, reference style (model_info.json; the box is centred: no translation)."""
    turns = [np.diag(np.append(np.where(np.arange(3) == a, 1.0, -1.0), 1.0)).ravel().tolist() for a in range(3)]
    path.write_text(json.dumps({"symmetries_discrete": turns}))
    return path


def score(run: Path, frames: Path) -> dict:
    model, meta = load_model(run)
    info = with_cuboid(meta, NetworkOptions(weights=run))
    detector = Detector(TorchBackend(model), info)
    surface = np.concatenate([BOX.keypoints()[:8]] + [np.linspace(BOX.keypoints()[a], BOX.keypoints()[b], 12) for a, b in CUBOID_EDGES])
    errors = []
    for path in sorted(frames.glob("*.json")):
        if path.name == "manifest.json":
            continue
        truth = json.loads(path.read_text())["objects"][0]
        image = cv2.cvtColor(cv2.imread(str(path.with_suffix(".png"))), cv2.COLOR_BGR2RGB)
        intrinsics = Intrinsics.from_json(json.loads(path.read_text())["camera_data"])
        found = detector.detect(image, intrinsics)
        if not found:
            errors.append(np.inf)
            continue
        true_pose = Pose.from_quaternion_xyzw(truth["quaternion_xyzw"], truth["location"])
        errors.append(adds(found[0].pose.rotation, found[0].pose.translation, true_pose.rotation, true_pose.translation, surface))
    errors = np.asarray(errors)
    return {"found": float(np.isfinite(errors).mean()), "adds_1cm": float((errors <= 0.01).mean()),
            "adds_2cm": float((errors <= 0.02).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--size", type=int, default=96)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = write_dataset(root / "train", args.frames, args.size, seed=0)
        held_out = write_dataset(root / "val", 60, args.size, seed=1)
        symmetries = half_turns_file(root / "model_info.json")
        epochs = -(-args.steps * BATCH // args.frames)  # the schedule ends with the last step
        for name, extra in (("plain", {}), ("symmetry-aware", {"symmetries": symmetries})):
            config = TrainConfig(
                data=[data], val_data=[held_out], net="light", epochs=epochs, val_every=epochs, batch_size=BATCH,
                image_size=args.size, augment=False, lr=2e-3, warmup_steps=20, loader_workers=1, out=root / name, seed=0, **extra,
            )
            summary = train(config)
            result = score(root / name, held_out)
            validation = summary.validation[-1]
            print(f"{name:>15}: {summary.steps} steps, val loss {validation['loss']:.4f}, keypoint error "
                  f"{validation['keypoint_error_px']:.1f} px, pose found {result['found']:.0%}, "
                  f"ADD-S <= 1 cm {result['adds_1cm']:.0%}, <= 2 cm {result['adds_2cm']:.0%}")


if __name__ == "__main__":
    main()
