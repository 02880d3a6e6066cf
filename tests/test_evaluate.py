"""Evaluation: hand-computed ADD/ADD-S cases, exact accuracies for known shifts, files end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dope_app.cli import main
from dope_stream.geometry import Intrinsics, Pose, projected_cuboid, Cuboid
from infer.evaluate import THRESHOLDS_M, accuracy_at, add, adds, auc, evaluate_folders, load_model_points

MODELS = Path(__file__).resolve().parents[1] / "dope_stream" / "assets" / "objects"
CLASS = "003_cracker_box"
INTRINSICS = Intrinsics(600.0, 600.0, 319.5, 239.5, 640, 480)


def test_add_of_a_pure_translation_is_its_length():
    pts = np.random.default_rng(0).normal(size=(50, 3))
    assert add(np.eye(3), np.array([0.03, 0, 0]), np.eye(3), np.zeros(3), pts) == pytest.approx(0.03)


def test_add_of_a_half_turn_by_hand():
    pts = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    half_turn_z = np.diag([-1.0, -1.0, 1.0])
    # Points on x and y move by 2, the one on z stays: mean (2 + 2 + 0) / 3.
    assert add(half_turn_z, np.zeros(3), np.eye(3), np.zeros(3), pts) == pytest.approx(4 / 3)
    # A symmetric point set (+-x, +-y) is unchanged by the half turn: ADD-S is 0.
    sym = np.array([[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]])
    assert adds(half_turn_z, np.zeros(3), np.eye(3), np.zeros(3), sym) == pytest.approx(0.0)
    assert add(half_turn_z, np.zeros(3), np.eye(3), np.zeros(3), sym) == pytest.approx(2.0)


def test_adds_never_exceeds_add():
    rng = np.random.default_rng(1)
    pts = load_model_points(MODELS, CLASS)
    for _ in range(10):
        R_est, R_gt = Rotation.random(2, random_state=rng).as_matrix()
        t_est, t_gt = rng.normal(scale=0.05, size=(2, 3))
        assert adds(R_est, t_est, R_gt, t_gt, pts) <= add(R_est, t_est, R_gt, t_gt, pts) + 1e-12


def test_accuracy_and_auc_of_known_errors():
    errors = np.array([0.0, 0.025, 0.075, np.inf])  # the last one was missed
    np.testing.assert_allclose(accuracy_at(errors, (0.02, 0.05, 0.08)), [0.25, 0.5, 0.75])
    # Integral over 0..0.1 of accuracy(t) / 0.1 = (1 + 0.75 + 0.25 + 0) / 4.
    assert auc(errors) == pytest.approx(0.5)


def _write(folder: Path, stem: str, poses: list[Pose]) -> None:
    cuboid = Cuboid.from_points(load_model_points(MODELS, CLASS))
    objects = [
        {"class": CLASS, "location": p.translation.tolist(), "quaternion_xyzw": p.quaternion_xyzw.tolist(),
         "projected_cuboid": projected_cuboid(cuboid, p, INTRINSICS).tolist(), "visibility": 1.0}
        for p in poses
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps({"camera_data": INTRINSICS.to_json(), "objects": objects}))


def _ground_truth(tmp_path: Path, count: int = 6) -> list[list[Pose]]:
    rng = np.random.default_rng(7)
    frames = []
    for i in range(count):
        poses = [Pose(Rotation.random(random_state=rng).as_matrix(), np.array([x, 0.0, 0.7])) for x in (-0.15, 0.15)]
        _write(tmp_path / "gt", f"{i:06d}", poses)
        frames.append(poses)
    return frames


def test_perfect_predictions_give_auc_1(tmp_path):
    for i, poses in enumerate(_ground_truth(tmp_path)):
        _write(tmp_path / "pred", f"{i:06d}", poses[::-1])  # order must not matter
    summary = evaluate_folders(tmp_path / "pred", tmp_path / "gt", MODELS, [])["classes"][CLASS]
    assert summary["auc"] == pytest.approx(1.0)
    assert summary["matched"] == 12 and summary["missed"] == 0 and summary["false_positives"] == 0
    assert summary["mean_keypoint_error_px"] == pytest.approx(0.0, abs=1e-6)


def test_a_3cm_shift_gives_the_expected_accuracies(tmp_path):
    shift = np.array([0.0, 0.018, 0.024])  # 3 cm
    for i, poses in enumerate(_ground_truth(tmp_path)):
        _write(tmp_path / "pred", f"{i:06d}", [Pose(p.rotation, p.translation + shift) for p in poses])
    summary = evaluate_folders(tmp_path / "pred", tmp_path / "gt", MODELS, [])["classes"][CLASS]
    np.testing.assert_allclose(summary["mean_error_m"], 0.03)
    expected = {f"{t:.2f}": (1.0 if t > 0.03 + 1e-9 else 0.0) for t in THRESHOLDS_M if abs(t - 0.03) > 1e-9}
    for key, value in expected.items():
        assert summary["accuracy"][key] == value, key
    assert summary["auc"] == pytest.approx(0.7)


def test_missed_and_false_detections_are_counted(tmp_path):
    frames = _ground_truth(tmp_path, count=2)
    _write(tmp_path / "pred", "000000", frames[0][:1])  # one of two found
    far = Pose(np.eye(3), np.array([0.0, 0.0, 2.0]))
    _write(tmp_path / "pred", "000001", frames[1] + [far])  # both found plus a spurious one
    summary = evaluate_folders(tmp_path / "pred", tmp_path / "gt", MODELS, [])["classes"][CLASS]
    assert (summary["ground_truth"], summary["matched"], summary["missed"], summary["false_positives"]) == (4, 3, 1, 1)
    assert summary["accuracy"]["0.01"] == pytest.approx(0.75)


def test_cli_writes_metrics_and_curve(tmp_path, capsys):
    for i, poses in enumerate(_ground_truth(tmp_path, count=2)):
        _write(tmp_path / "pred", f"{i:06d}", poses)
    out = tmp_path / "report"
    code = main(["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--models", str(MODELS),
                 "--symmetric", CLASS, "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"][CLASS]["metric"] == "ADD-S" and metrics["classes"][CLASS]["auc"] == pytest.approx(1.0)
    assert (out / "accuracy_curve.png").stat().st_size > 1000
    assert CLASS in capsys.readouterr().out


def test_cli_unknown_class_model_is_one_clear_error(tmp_path, capsys):
    _ground_truth(tmp_path, count=1)
    code = main(["evaluate", "--pred", str(tmp_path / "gt"), "--gt", str(tmp_path / "gt"), "--models", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--models" in err and CLASS in err


def test_a_far_false_detection_does_not_turn_predictions_into_centimetres(tmp_path):
    """`dope infer` files say they are in metres: one detection 30 m away (a degenerate PnP on a few
    clustered keypoints) once made the unit guess read the whole file as centimetres."""
    from infer.detector import Detection
    from infer.inference import prediction_json

    (truth, other), = _ground_truth(tmp_path, count=1)
    far = Pose(np.eye(3), np.array([1.0, 0.5, 30.0]))
    cuboid = Cuboid.from_points(load_model_points(MODELS, CLASS))
    detections = [
        Detection(CLASS, pose, projected_cuboid(cuboid, pose, INTRINSICS), np.zeros((9, 2)), np.ones(9), np.ones(9, bool), 1.0, 0.0)
        for pose in (truth, far, other)
    ]
    (tmp_path / "pred").mkdir()
    (tmp_path / "pred" / "000000.json").write_text(json.dumps(prediction_json(detections, INTRINSICS)))
    summary = evaluate_folders(tmp_path / "pred", tmp_path / "gt", MODELS, [])["classes"][CLASS]
    assert summary["matched"] == 2 and summary["false_positives"] == 1
    assert summary["mean_error_m"] == pytest.approx(0.0, abs=1e-9)
