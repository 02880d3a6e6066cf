"""BOP in and out: generated data round-trips through a BOP dataset (poses, cameras, masks; mm <-> m),
a hand-built test set (as LM-O / YCB-V ship) reads and evaluates, and the result CSV has bop_toolkit's
columns."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from dope_stream.bop import BopResult, index_bop, read_results_csv, write_results_csv
from dope_app.cli import main
from dope_stream.errors import DopeError
from dope_stream.generate import generate
from dope_stream.geometry import Cuboid, Intrinsics, Pose, projected_cuboid
from dope_stream.reader import open_dataset
from dope_stream.writers import frames_to_render

from conftest import tiny_generate_config


@pytest.fixture(scope="module")
def generated_pair(tmp_path_factory):
    """The same frames (same seed) as a DOPE folder and as a BOP dataset."""
    root = tmp_path_factory.mktemp("bop")
    folder = generate(tiny_generate_config(root / "folder", layout="folder", nb_frames=3, nb_objects=(2, 2)))
    bop = generate(tiny_generate_config(root / "bop", layout="bop", nb_frames=3, nb_objects=(2, 2)))
    return folder, bop


def test_generated_frames_round_trip_through_bop(generated_pair):
    folder, bop = generated_pair
    scene = bop / "train_pbr" / "000000"
    for name in ("scene_gt.json", "scene_camera.json", "scene_gt_info.json"):
        assert sorted(json.loads((scene / name).read_text())) == ["0", "1", "2"]
    manifest = json.loads((folder / "manifest.json").read_text())
    extent = np.array(manifest["classes"]["003_cracker_box"]["extent"])
    models_info = json.loads((bop / "models" / "models_info.json").read_text())
    np.testing.assert_allclose([models_info["1"][f"size_{a}"] for a in "xyz"], extent * 1000, rtol=1e-6)  # mm
    ply = trimesh.load(bop / "models" / "obj_000001.ply", process=False)
    np.testing.assert_allclose(ply.extents, extent * 1000, rtol=1e-5)
    camera = json.loads((bop / "camera.json").read_text())
    gt = json.loads((scene / "scene_gt.json").read_text())
    read_back = {image.key: image for image in index_bop(bop).images}
    for i in range(3):
        original = json.loads((folder / f"{i:06d}.json").read_text())
        intrinsics = Intrinsics.from_json(original["camera_data"])
        assert (camera["width"], camera["height"]) == (intrinsics.width, intrinsics.height)
        image = read_back[f"000000_{i:06d}"]
        assert Intrinsics.from_json(image.annotation["camera_data"]) == intrinsics
        seg = cv2.imread(str(folder / f"{i:06d}.seg.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(cv2.imread(str(scene / "rgb" / f"{i:06d}.png")), cv2.imread(str(folder / f"{i:06d}.png")))
        assert np.array_equal(cv2.imread(str(scene / "depth" / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED),
                              cv2.imread(str(folder / f"{i:06d}.depth.png"), cv2.IMREAD_UNCHANGED))
        for k, (obj, back) in enumerate(zip(original["objects"], image.annotation["objects"], strict=True)):
            # the file holds millimetres, the reader gives metres again
            np.testing.assert_allclose(np.array(gt[str(i)][k]["cam_t_m2c"]) / 1000, obj["location"], atol=1e-9)
            np.testing.assert_allclose(back["location"], obj["location"], atol=1e-9)
            rotation = Rotation.from_quat(obj["quaternion_xyzw"]).as_matrix()
            np.testing.assert_allclose(Rotation.from_quat(back["quaternion_xyzw"]).as_matrix(), rotation, atol=1e-9)
            np.testing.assert_allclose(back["projected_cuboid"], obj["projected_cuboid"], atol=1e-3)
            assert back["class"] == "obj_000001"
            visible = cv2.imread(str(scene / "mask_visib" / f"{i:06d}_{k:06d}.png"), cv2.IMREAD_UNCHANGED) > 0
            full = cv2.imread(str(scene / "mask" / f"{i:06d}_{k:06d}.png"), cv2.IMREAD_UNCHANGED) > 0
            assert np.array_equal(visible, seg == obj["segmentation_id"])
            assert not (visible & ~full).any()
            # the projected mesh covers about as many pixels as the renderer counted for it alone
            assert abs(int(full.sum()) - obj["px_count_all"]) <= max(3, 0.1 * obj["px_count_all"])
            assert back["visibility"] == pytest.approx(obj["visibility"], abs=0.1)


def test_bop_dataset_trains_like_any_other(generated_pair):
    _, bop = generated_pair
    dataset = open_dataset([bop])
    assert len(dataset) == 3 and dataset.unit == "m" and sorted(dataset.cuboids) == ["obj_000001"]
    frame = dataset.frame(0)
    assert frame.image.shape == (64, 64, 3) and frame.objects[0].class_name == "obj_000001"


def test_bop_resume_redoes_only_unlisted_frames(tmp_path):
    config = tiny_generate_config(tmp_path / "bop", layout="bop", nb_frames=2)
    generate(config)
    (tmp_path / "bop" / "train_pbr" / "000000" / "rgb" / "000001.png").unlink()
    assert frames_to_render(tmp_path / "bop", config) == [1]
    generate(config)
    assert frames_to_render(tmp_path / "bop", config) == []


# --- a real-test-set-like fixture ---------------------------------------------------------------

BOX_MM = trimesh.creation.box(extents=(60.0, 40.0, 100.0))
SYMMETRIC_FLIP = [1, 0, 0, 0, 0, -1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1]


def _pose(rotvec, t_m) -> Pose:
    return Pose(Rotation.from_rotvec(rotvec).as_matrix(), np.asarray(t_m, dtype=np.float64))


def build_test_set(root) -> dict[tuple[int, int, int], Pose]:
    """Two objects (2 has a symmetry), one test scene of 2 jpg images; object 2 in image 5 is not a
    BOP19 target. Returns the true poses by (im_id, obj_id, gt index)."""
    (root / "models").mkdir(parents=True)
    for obj_id in (1, 2):
        BOX_MM.export(root / "models" / f"obj_{obj_id:06d}.ply")
    info = {"diameter": 124.0, "min_x": -30.0, "min_y": -20.0, "min_z": -50.0, "size_x": 60.0, "size_y": 40.0, "size_z": 100.0}
    (root / "models" / "models_info.json").write_text(json.dumps({"1": info, "2": {**info, "symmetries_discrete": [SYMMETRIC_FLIP]}}))
    scene = root / "test" / "000002"
    (scene / "rgb").mkdir(parents=True)
    k = [500.0, 0.0, 159.5, 0.0, 500.0, 119.5, 0.0, 0.0, 1.0]
    poses = {(4, 1, 0): _pose([0.3, 0.2, 0.1], [-0.05, 0.0, 0.8]), (4, 2, 1): _pose([0.0, 0.4, 2.0], [0.07, 0.02, 0.9]),
             (5, 1, 0): _pose([1.0, 0.0, 0.0], [0.0, 0.03, 0.7]), (5, 2, 1): _pose([0.0, 0.0, 0.5], [0.1, 0.0, 1.0])}
    gt, camera, gt_info = {}, {}, {}
    for im_id in (4, 5):
        cv2.imwrite(str(scene / "rgb" / f"{im_id:06d}.jpg"), np.zeros((240, 320, 3), np.uint8))
        camera[str(im_id)] = {"cam_K": k, "depth_scale": 0.1}
        entries = sorted((key, pose) for key, pose in poses.items() if key[0] == im_id)
        gt[str(im_id)] = [{"cam_R_m2c": p.rotation.ravel().tolist(), "cam_t_m2c": (p.translation * 1000).tolist(), "obj_id": key[1]}
                          for key, p in entries]
        gt_info[str(im_id)] = [{"visib_fract": 0.9, "px_count_all": 1000, "px_count_visib": 900}] * len(entries)
    for name, content in (("scene_gt.json", gt), ("scene_camera.json", camera), ("scene_gt_info.json", gt_info)):
        (scene / name).write_text(json.dumps(content))
    targets = [{"scene_id": 2, "im_id": 4, "obj_id": 1, "inst_count": 1}, {"scene_id": 2, "im_id": 4, "obj_id": 2, "inst_count": 1},
               {"scene_id": 2, "im_id": 5, "obj_id": 1, "inst_count": 1}]
    (root / "test_targets_bop19.json").write_text(json.dumps(targets))
    return poses


def test_a_bop_test_set_reads_in_metres_with_its_targets_only(tmp_path):
    poses = build_test_set(tmp_path / "lmo")
    dataset = index_bop(tmp_path / "lmo")
    assert [image.key for image in dataset.images] == ["000002_000004", "000002_000005"]
    assert dataset.cuboids["obj_000001"] == Cuboid((0.0, 0.0, 0.0), (0.06, 0.04, 0.1))
    assert dataset.symmetries["obj_000002"].symmetric and not dataset.symmetries["obj_000001"].symmetric
    first, second = dataset.images
    assert [o["obj_id"] for o in first.annotation["objects"]] == [1, 2]
    assert [o["obj_id"] for o in second.annotation["objects"]] == [1]  # object 2 is not a target there
    truth = poses[(5, 1, 0)]
    np.testing.assert_allclose(second.annotation["objects"][0]["location"], truth.translation)
    intrinsics = Intrinsics.from_json(second.annotation["camera_data"])
    assert (intrinsics.width, intrinsics.height, intrinsics.cx) == (320, 240, 159.5)
    np.testing.assert_allclose(second.annotation["objects"][0]["projected_cuboid"],
                               projected_cuboid(dataset.cuboids["obj_000001"], truth, intrinsics))
    # the same dataset given as its split or its scene
    assert len(index_bop(tmp_path / "lmo" / "test").images) == len(index_bop(tmp_path / "lmo" / "test" / "000002").images) == 2


def test_results_csv_has_the_columns_bop_toolkit_reads(tmp_path):
    pose = _pose([0.1, -0.2, 0.3], [0.01, -0.02, 0.5])
    path = write_results_csv(tmp_path / "r.csv", [BopResult(2, 4, 1, 0.75, pose, 0.031)])
    with open(path, newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == ["scene_id", "im_id", "obj_id", "score", "R", "t", "time"]
    # bop_toolkit's inout.load_bop_results splits each line on commas, expecting 7 fields, and the
    # R and t fields on whitespace
    assert all(len(line.split(",")) == 7 for line in path.read_text().splitlines())
    scene_id, im_id, obj_id, score, rotation, translation, seconds = rows[1]
    assert (int(scene_id), int(im_id), int(obj_id), float(score), float(seconds)) == (2, 4, 1, 0.75, 0.031)
    np.testing.assert_allclose(np.array(rotation.split(), float).reshape(3, 3), pose.rotation, atol=1e-9)  # row-major
    np.testing.assert_allclose(np.array(translation.split(), float), [10.0, -20.0, 500.0], atol=1e-6)  # mm
    (back,) = read_results_csv(path)
    np.testing.assert_allclose(back.pose.matrix, pose.matrix, atol=1e-9)


def test_dope_evaluate_scores_a_bop_result_csv(tmp_path, capsys):
    poses = build_test_set(tmp_path / "lmo")
    flip = np.array(SYMMETRIC_FLIP, float).reshape(4, 4)[:3, :3]
    results = [
        BopResult(2, 4, 1, 0.9, Pose(poses[(4, 1, 0)].rotation, poses[(4, 1, 0)].translation + [0.005, 0, 0])),  # 5 mm off
        # object 2 estimated in its symmetric twin pose: right under ADD-S, its default metric
        BopResult(2, 4, 2, 0.8, Pose(poses[(4, 2, 1)].rotation @ flip, poses[(4, 2, 1)].translation)),
        BopResult(2, 5, 2, 0.5, poses[(5, 2, 1)]),  # not a target: ignored
    ]
    write_results_csv(tmp_path / "results.csv", results)
    assert main(["evaluate", "--pred", str(tmp_path / "results.csv"), "--gt", str(tmp_path / "lmo"),
                 "--out", str(tmp_path / "metrics")]) == 0
    metrics = json.loads((tmp_path / "metrics" / "metrics.json").read_text())
    one, two = metrics["classes"]["obj_000001"], metrics["classes"]["obj_000002"]
    assert one["metric"] == "ADD" and two["metric"] == "ADD-S"
    assert one["ground_truth"] == 2 and one["missed"] == 1  # image 5's object 1 has no estimate
    assert one["errors_m"][0] == pytest.approx(0.005, abs=1e-6)
    assert two["ground_truth"] == 1 and two["errors_m"][0] < 1e-3 and two["false_positives"] == 0


def test_bad_bop_files_are_one_clear_error(tmp_path):
    build_test_set(tmp_path / "lmo")
    (tmp_path / "lmo" / "models" / "models_info.json").write_text(json.dumps({"1": {"diameter": 1.0}}))
    with pytest.raises(DopeError, match="min_x/y/z and size_x/y/z"):
        index_bop(tmp_path / "lmo")
    (tmp_path / "bad.csv").write_text("scene_id,im_id,obj_id,score,R,t,time\n2,4,1,0.5,1 0 0,0 0 0,-1\n")
    with pytest.raises(DopeError, match="bad.csv:2"):
        read_results_csv(tmp_path / "bad.csv")


class _FixedDetector:
    """Stands in for a network: one detection per image at a known pose."""

    def __init__(self, pose: Pose):
        from trainer.meta import ModelMeta

        self.pose = pose
        self.info = ModelMeta("light", "obj_000001", Cuboid((0, 0, 0), (0.06, 0.04, 0.1)), None, None, (0.5,) * 3, (0.5,) * 3)
        self.cameras = []

    def detect(self, image, intrinsics):
        from infer.detector import Detection

        self.cameras.append(intrinsics)
        keypoints = projected_cuboid(self.info.cuboid, self.pose, intrinsics)
        return [Detection("obj_000001", self.pose, keypoints, keypoints, np.ones(9), np.ones(9, bool), 0.8, 0.1)]


def test_dope_infer_on_a_bop_dataset_writes_the_result_csv(tmp_path):
    from infer.bop_io import infer_bop
    from infer.config import InferConfig

    build_test_set(tmp_path / "lmo")
    config = InferConfig(weights=tmp_path / "w.pt", images=tmp_path / "lmo", out=tmp_path / "out", bop_csv=tmp_path / "r.csv")
    pose = _pose([0.2, 0.1, 0.0], [0.0, 0.0, 0.75])
    detector = _FixedDetector(pose)
    saved = []
    assert infer_bop(detector, config, lambda stem, *rest: saved.append(stem)) == (2, 0, 2)
    assert saved == ["000002_000004", "000002_000005"]
    assert detector.cameras[0].fx == 500.0 and detector.cameras[0].width == 320  # each image's own camera
    results = read_results_csv(tmp_path / "r.csv")
    assert [(r.scene_id, r.im_id, r.obj_id, r.score) for r in results] == [(2, 4, 1, 0.8), (2, 5, 1, 0.8)]
    assert all(r.time >= 0 for r in results)
    np.testing.assert_allclose(results[0].pose.matrix, pose.matrix, atol=1e-6)


def test_dope_infer_bop_options_are_checked(tmp_path, capsys):
    from infer.bop_io import bop_obj_id

    assert bop_obj_id("obj_000012", None) == 12 and bop_obj_id("cracker", 3) == 3
    with pytest.raises(DopeError, match="bop_obj_id"):
        bop_obj_id("cracker", None)
    (tmp_path / "photos").mkdir()
    cv2.imwrite(str(tmp_path / "photos" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    ckpt = tmp_path / "missing.pt"
    code = main(["infer", "--weights", str(ckpt), "--images", str(tmp_path / "photos"), "--bop_csv", str(tmp_path / "r.csv"),
                 "--out", str(tmp_path / "out")])
    assert code == 2 and "option 'bop_csv'" in capsys.readouterr().err
