"""Symmetric objects: symmetries read from BOP / reference files, and training labels that depend only
on what the image shows (the same view of a symmetric box or cylinder always gets the same corners)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dope_stream.errors import DopeError
from dope_stream.geometry import Cuboid, Intrinsics, Pose, projected_cuboid
from dope_stream.symmetry import Symmetries, read_symmetries, symmetries_in_folder
from trainer.data import EncoderSettings, FrameEncoder

from toy_dataset import FACES, encode_png

CENTRE = np.array([0.01, -0.02, 0.03])  # off the model origin, as YCB meshes are
BOX = Cuboid(tuple(CENTRE), (0.16, 0.21, 0.07))
INTRINSICS = Intrinsics.from_fov(160, 160, 50.0)
# Opposite faces share a colour, so the box looks the same after a half turn about any of its axes.
AXIS_COLOURS = {0: (220, 40, 40), 1: (220, 40, 40), 2: (40, 200, 40), 3: (40, 200, 40), 4: (40, 60, 220), 5: (40, 60, 220)}


def half_turn(axis: int) -> np.ndarray:
    """4x4 half turn about the model axis `axis` through the box centre (model frame, metres)."""
    transform = np.eye(4)
    transform[:3, :3] = Rotation.from_rotvec(np.pi * np.eye(3)[axis]).as_matrix()
    transform[:3, 3] = CENTRE - transform[:3, :3] @ CENTRE
    return transform


def box_models_info(path) -> None:
    """A BOP models_info.json (millimetres) with the box as object 3 and a plain object 1."""
    discrete = []
    for axis in range(3):
        transform = half_turn(axis)
        transform[:3, 3] *= 1000.0
        discrete.append(transform.ravel().tolist())
    path.write_text(json.dumps({
        "1": {"diameter": 100.0, "min_x": -50.0, "size_x": 100.0},
        "3": {"diameter": 272.0, "symmetries_discrete": discrete},
    }))


def moved(pose: Pose, transform: np.ndarray) -> Pose:
    """The object at `pose` turned by a model-frame transform (the same view for a symmetry)."""
    return Pose(pose.rotation @ transform[:3, :3], pose.translation + pose.rotation @ transform[:3, 3])


def draw_box(pose: Pose, intrinsics: Intrinsics = INTRINSICS) -> np.ndarray:
    """The symmetric box on grey, faces painted far to near."""
    points = projected_cuboid(BOX, pose, intrinsics)
    image = np.full((intrinsics.height, intrinsics.width, 3), 90, np.uint8)
    depth = pose.apply(BOX.keypoints()[:8])[:, 2]
    for face in sorted(range(6), key=lambda f: -depth[list(FACES[f])].mean()):
        cv2.fillConvexPoly(image, np.round(points[list(FACES[face])] * 16).astype(np.int32), AXIS_COLOURS[face], cv2.LINE_AA, 4)
    return image


def random_pose(rng) -> Pose:
    return Pose(Rotation.random(random_state=rng).as_matrix(), np.array([rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03), 0.7]))


def test_bop_models_info_is_read_in_metres(tmp_path):
    box_models_info(tmp_path / "models_info.json")
    table = read_symmetries(tmp_path / "models_info.json")
    assert sorted(table) == ["obj_000001", "obj_000003"]
    assert not table["obj_000001"].symmetric
    np.testing.assert_allclose(table["obj_000003"].discrete, [half_turn(a) for a in range(3)], atol=1e-12)
    assert symmetries_in_folder(tmp_path, "obj_000003") == table["obj_000003"]


def test_reference_model_info_with_a_continuous_axis(tmp_path):
    folder = tmp_path / "can"
    folder.mkdir()
    (folder / "model_info.json").write_text(json.dumps({
        "symmetries_discrete": [[1, 0, 0, 0, 0, -1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1]],
        "symmetries_continuous": [{"axis": [0, 0, 2], "offset": [0, 0, 0]}],
    }))
    symmetries = symmetries_in_folder(tmp_path, "can")
    assert symmetries.symmetric and len(symmetries.discrete) == 1
    np.testing.assert_allclose(symmetries.continuous[0][0], [0, 0, 1])
    assert not symmetries_in_folder(tmp_path, "other").symmetric


@pytest.mark.parametrize("content, message", [
    ({"3": {"symmetries_discrete": [[1, 2, 3]]}}, "4x4 matrices"),
    ({"3": {"symmetries_discrete": [[2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]]}}, "not a rotation"),
    ({"3": {"symmetries_continuous": [{"axis": [0, 0, 0]}]}}, "not all zero"),
    ({"box": {}}, "not a BOP object id"),
])
def test_bad_symmetry_files_are_one_clear_error(tmp_path, content, message):
    path = tmp_path / "models_info.json"
    path.write_text(json.dumps(content))
    with pytest.raises(DopeError, match=message):
        read_symmetries(path)


def _encode(image: np.ndarray, pose: Pose, symmetries: Symmetries | None) -> dict:
    annotation = {
        "camera_data": INTRINSICS.to_json(),
        "objects": [{"class": "box", "name": "box_0", "location": pose.translation.tolist(),
                     "quaternion_xyzw": pose.quaternion_xyzw.tolist(),
                     "projected_cuboid": projected_cuboid(BOX, pose, INTRINSICS).tolist(), "visibility": 1.0}],
    }
    settings = EncoderSettings("box", 160, sigma=1.0, affinity_radius=1.5, train=False, cuboid=BOX, symmetries=symmetries)
    return FrameEncoder(settings)({"__key__": "0", "png": encode_png(image), "json": json.dumps(annotation)}, seed=0)


def test_the_same_view_of_a_symmetric_box_gets_the_same_labels(tmp_path):
    """Two poses a half turn apart give the same image; plain targets label its corners in two
    contradictory ways, symmetry-aware targets in one."""
    box_models_info(tmp_path / "models_info.json")
    symmetries = read_symmetries(tmp_path / "models_info.json")["obj_000003"]
    rng = np.random.default_rng(0)
    for trial in range(6):
        pose = random_pose(rng)
        turned = moved(pose, half_turn(trial % 3))
        image, image_turned = draw_box(pose), draw_box(turned)
        difference = np.abs(image.astype(int) - image_turned)
        assert difference.max() <= 4 and difference.mean() < 0.01  # the same image (edge rounding aside)
        plain, plain_turned = _encode(image, pose, None), _encode(image_turned, turned, None)
        aware, aware_turned = _encode(image, pose, symmetries), _encode(image_turned, turned, symmetries)
        assert (plain["belief"] - plain_turned["belief"]).abs().max() > 0.5  # corners swapped
        np.testing.assert_allclose(aware["belief"].numpy(), aware_turned["belief"].numpy(), atol=1e-5)
        np.testing.assert_allclose(aware["affinity"].numpy(), aware_turned["affinity"].numpy(), atol=1e-5)
        # and the labels are still this box's corners: a permutation of the annotated ones
        labelled = aware["keypoints"][0].numpy()
        annotated = projected_cuboid(BOX, pose, INTRINSICS)
        assert np.linalg.norm(labelled[:, None] - annotated[None], axis=2).min(axis=1).max() < 1e-3


def test_a_cylinder_turned_about_its_axis_or_flipped_keeps_its_labels():
    """Continuous symmetry (any turn about the axis) combined with a flip of the axis."""
    axis_point = np.array([0.0, 0.01, 0.0])
    flip = np.eye(4)
    flip[:3, :3] = np.diag([1.0, -1.0, -1.0])
    flip[:3, 3] = axis_point - flip[:3, :3] @ axis_point
    cylinder = Symmetries(flip[None], ((np.array([0.0, 0.0, 1.0]), axis_point),))
    can = Cuboid((0.0, 0.01, 0.0), (0.066, 0.066, 0.1))
    rng = np.random.default_rng(1)
    for trial in range(20):
        pose = random_pose(rng)
        turn = np.eye(4)
        turn[:3, :3] = Rotation.from_rotvec([0, 0, rng.uniform(0, 2 * np.pi)]).as_matrix()
        turn[:3, 3] = axis_point - turn[:3, :3] @ axis_point
        other = moved(pose, turn @ flip if trial % 2 else turn)
        # the cylinder's surface lands where it was: the same object in the image
        angles, heights = np.meshgrid(np.linspace(0, 2 * np.pi, 720, endpoint=False), np.linspace(-0.05, 0.05, 11))
        mantle = np.stack([0.033 * np.cos(angles), 0.033 * np.sin(angles), heights], axis=-1).reshape(-1, 3) + axis_point
        seen, seen_other = pose.apply(mantle), other.apply(mantle)
        assert np.linalg.norm(seen[::37, None] - seen_other[None], axis=2).min(axis=1).max() < 0.001
        first = projected_cuboid(can, cylinder.canonical(pose), INTRINSICS)
        second = projected_cuboid(can, cylinder.canonical(other), INTRINSICS)
        np.testing.assert_allclose(first, second, atol=1e-6)
        assert np.abs(projected_cuboid(can, pose, INTRINSICS) - projected_cuboid(can, other, INTRINSICS)).max() > 1.0


def test_training_stores_symmetries_and_map_convention_for_inference(tmp_path):
    from infer.config import NetworkOptions
    from dope_stream.symmetry import Symmetries
    from infer.loading import with_cuboid
    from toy_dataset import write_folder
    from trainer.checkpoint import load_model
    from trainer.config import TrainConfig
    from trainer.loop import train

    data = write_folder(tmp_path / "data", 4, size=64)
    (tmp_path / "toy_box").mkdir()
    (tmp_path / "toy_box" / "model_info.json").write_text(json.dumps({"symmetries_discrete": [half_turn(2).ravel().tolist()]}))
    config = TrainConfig(
        data=[data], val_fraction=0.25, net="light", stages=1, epochs=1, batch_size=2, image_size=64, out=tmp_path / "run",
        loader_workers=0, max_steps=1, warmup_steps=0, symmetries=tmp_path / "toy_box" / "model_info.json", map_convention="corner",
    )
    train(config)
    _, meta = load_model(tmp_path / "run")
    info = with_cuboid(meta, NetworkOptions(weights=tmp_path / "run"))
    assert info.map_convention == "corner"
    symmetries = Symmetries.from_dict(info.symmetries)
    np.testing.assert_allclose(symmetries.discrete[0][:3, :3], np.diag([-1.0, -1.0, 1.0]), atol=1e-12)
    # the file's translations are millimetres
    np.testing.assert_allclose(symmetries.discrete[0][:3, 3], half_turn(2)[:3, 3] * 0.001, atol=1e-12)
    bad = config.model_copy(update={"symmetries": tmp_path / "models_info.json", "out": tmp_path / "run2"})
    box_models_info(tmp_path / "models_info.json")
    with pytest.raises(DopeError, match="has no object 'toy_box'"):
        train(bad)


def write_twin_views(folder, views: int, size: int):
    """Each of `views` images of the symmetric box twice, annotated at its pose and at the pose a
    half turn away (the same image): the contradiction plain labels give a symmetric object."""
    folder.mkdir()
    intrinsics = Intrinsics.from_fov(size, size, 50.0)
    rng = np.random.default_rng(2)
    for view in range(views):
        pose = Pose(Rotation.random(random_state=rng).as_matrix(), np.array([0.0, 0.0, 0.45]))
        image = encode_png(draw_box(pose, intrinsics))
        for twin, annotated in enumerate((pose, moved(pose, half_turn(view % 3)))):
            stem = folder / f"{2 * view + twin:06d}"
            stem.with_suffix(".png").write_bytes(image)
            stem.with_suffix(".json").write_text(json.dumps({"camera_data": intrinsics.to_json(), "objects": [{
                "class": "box", "name": "box_0", "location": annotated.translation.tolist(),
                "quaternion_xyzw": annotated.quaternion_xyzw.tolist(),
                "projected_cuboid": projected_cuboid(BOX, annotated, intrinsics).tolist(), "visibility": 1.0}]}))
    (folder / "manifest.json").write_text(json.dumps({"units": "m", "classes": {"box": BOX.to_dict()}}))
    return folder


def test_symmetry_aware_training_converges_where_plain_training_contradicts_itself(tmp_path):
    """The same images with both labellings: plain training cannot fit both (its loss stays up and its
    corners are wrong), symmetry-aware training labels them alike and learns them."""
    from trainer.config import TrainConfig
    from trainer.loop import train

    data = write_twin_views(tmp_path / "data", views=4, size=96)
    box_models_info(tmp_path / "models_info.json")
    (tmp_path / "model_info.json").write_text(json.dumps(json.loads((tmp_path / "models_info.json").read_text())["3"]))
    runs = {}
    for name, extra in (("plain", {}), ("aware", {"symmetries": tmp_path / "model_info.json"})):
        config = TrainConfig(
            data=[data], val_data=[data], net="light", epochs=45, batch_size=8, lr=3e-3, image_size=96, augment=False,
            warmup_steps=5, loader_workers=0, val_every=45, save_every=1000, out=tmp_path / name, seed=0, **extra,
        )
        runs[name] = train(config)
    plain, aware = (np.mean(runs[n].losses[-5:]) for n in ("plain", "aware"))
    assert aware < plain / 2, (plain, aware)
    plain_error, aware_error = (runs[n].validation[-1]["keypoint_error_px"] for n in ("plain", "aware"))
    assert aware_error < 3.0 and plain_error > 2 * aware_error, (plain_error, aware_error)
