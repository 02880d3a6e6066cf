"""ADD / ADD-S pose accuracy of predictions against ground truth (pure numpy metrics + report).

Metrics follow the bop_toolkit argument order, `add(R_est, t_est, R_gt, t_gt, pts)`, with model
points (N, 3) in the mesh's own frame and poses mapping that frame to the camera (metres).
Predictions are matched one-to-one to ground-truth instances of the same class in each image
(Hungarian assignment on the ADD/ADD-S cost); unmatched ground truth counts as a miss (never within
any threshold), unmatched predictions as false positives. Accuracy at threshold t is the share of
ground-truth instances whose matched error is <= t; the AUC integrates that curve over 0..max and
divides by max (the DOPE paper's metric with max = 10 cm).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from dope_stream.exchange import MANIFEST_NAME, parse_json, write_atomically
from dope_stream.errors import DopeError
from dope_stream.geometry import Pose
from dope_stream.reader import canonical_annotation
from dope_stream.symmetry import symmetries_in_folder

log = logging.getLogger(__name__)

THRESHOLDS_M = tuple(round(0.01 * i, 2) for i in range(1, 11))  # 1..10 cm
AUC_MAX_M = 0.1
MESH_SUFFIXES = (".obj", ".ply", ".glb", ".stl", ".off")
METRICS_NAME = "metrics.json"


def add(R_est: np.ndarray, t_est: np.ndarray, R_gt: np.ndarray, t_gt: np.ndarray, pts: np.ndarray) -> float:
    """Average Distance of model points (N, 3) under the estimated and the true pose (metres)."""
    est = pts @ R_est.T + np.reshape(t_est, 3)
    gt = pts @ R_gt.T + np.reshape(t_gt, 3)
    return float(np.linalg.norm(est - gt, axis=1).mean())


def adds(R_est: np.ndarray, t_est: np.ndarray, R_gt: np.ndarray, t_gt: np.ndarray, pts: np.ndarray) -> float:
    """ADD-S: mean distance from each estimated point to the nearest true point (symmetric objects)."""
    est = pts @ R_est.T + np.reshape(t_est, 3)
    gt = pts @ R_gt.T + np.reshape(t_gt, 3)
    distances, _ = cKDTree(gt).query(est, k=1)
    return float(distances.mean())


def accuracy_at(errors: np.ndarray, thresholds: tuple[float, ...]) -> np.ndarray:
    """Share of instances with error <= each threshold; misses are +inf."""
    errors = np.asarray(errors, dtype=np.float64)
    if errors.size == 0:
        return np.zeros(len(thresholds))
    return (errors[None, :] <= np.asarray(thresholds)[:, None]).mean(axis=1)


def auc(errors: np.ndarray, max_threshold: float = AUC_MAX_M) -> float:
    """Area under accuracy(t) for t in [0, max], divided by max.

    accuracy(t) is a step function, so the integral is exact: each instance contributes
    (max - error) / max when its error is below max, nothing otherwise.
    """
    errors = np.asarray(errors, dtype=np.float64)
    if errors.size == 0:
        return 0.0
    return float(np.clip(1.0 - errors / max_threshold, 0.0, 1.0).mean())


# --- matching ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    """One object instance (predicted or true) of an image."""

    class_name: str
    pose: Pose  # mesh frame -> camera
    projected_cuboid: np.ndarray  # (9, 2) pixels


@dataclass
class ClassResult:
    """Per class: the error of every ground-truth instance (inf = missed), keypoint errors, counts."""

    errors: list[float] = field(default_factory=list)
    keypoint_errors: list[float] = field(default_factory=list)
    false_positives: int = 0
    predictions: int = 0


def matches(
    predictions: list[Instance], truths: list[Instance], points: np.ndarray, symmetric: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one Hungarian matching of one image's instances of one class on the ADD (ADD-S) cost:
    (prediction indices, truth indices, their errors in metres)."""
    metric = adds if symmetric else add
    cost = np.array(
        [[metric(p.pose.rotation, p.pose.translation, t.pose.rotation, t.pose.translation, points) for t in truths]
         for p in predictions]
    ).reshape(len(predictions), len(truths))
    rows, cols = linear_sum_assignment(cost) if cost.size else (np.array([], int), np.array([], int))
    return rows, cols, cost[rows, cols]


def match_image(
    predictions: list[Instance], truths: list[Instance], points: np.ndarray, symmetric: bool, result: ClassResult
) -> None:
    """Add one image's instances of one class to `result` (`matches`)."""
    rows, cols, matched = matches(predictions, truths, points, symmetric)
    errors = np.full(len(truths), np.inf)
    errors[cols] = matched
    result.errors.extend(errors.tolist())
    result.keypoint_errors.extend(
        float(np.linalg.norm(predictions[r].projected_cuboid - truths[c].projected_cuboid, axis=1).mean())
        for r, c in zip(rows, cols)
    )
    result.false_positives += len(predictions) - len(rows)
    result.predictions += len(predictions)


def summarise(result: ClassResult, symmetric: bool) -> dict:
    errors = np.asarray(result.errors)
    matched = errors[np.isfinite(errors)]
    accuracies = accuracy_at(errors, THRESHOLDS_M)
    return {
        "metric": "ADD-S" if symmetric else "ADD",
        "ground_truth": int(errors.size),
        "predictions": result.predictions,
        "matched": int(matched.size),
        "missed": int(errors.size - matched.size),
        "false_positives": result.false_positives,
        "accuracy": {f"{t:.2f}": float(a) for t, a in zip(THRESHOLDS_M, accuracies)},
        "auc": auc(errors),
        "mean_error_m": float(matched.mean()) if matched.size else None,
        "mean_keypoint_error_px": float(np.mean(result.keypoint_errors)) if result.keypoint_errors else None,
        "errors_m": [float(e) if np.isfinite(e) else None for e in errors],
    }


# --- files ---------------------------------------------------------------------------------------


def read_instances(path: Path, min_visibility: float = 0.0) -> list[Instance]:
    """Instances with a pose in one annotation/prediction JSON (any supported variant, metres out)."""
    annotation = canonical_annotation(parse_json(path.read_bytes(), str(path)), "auto", str(path))
    instances = []
    for obj in annotation["objects"]:
        if "location" not in obj or "quaternion_xyzw" not in obj:
            raise DopeError(f"{path}: object '{obj['name']}' has no location/quaternion_xyzw pose")
        if obj["visibility"] <= min_visibility:
            continue
        pose = Pose.from_quaternion_xyzw(obj["quaternion_xyzw"], obj["location"])
        instances.append(Instance(obj["class"], pose, np.asarray(obj["projected_cuboid"], dtype=np.float64)))
    return instances


def load_model_points(models_dir: Path, class_name: str) -> np.ndarray:
    """(N, 3) model points of a class: `points.xyz` (x y z per line) or a mesh's vertices.

    Looked up as DIR/CLASS/points.xyz, DIR/CLASS.xyz, then a mesh in DIR/CLASS/ or DIR/CLASS.<ext>.
    """
    folder = models_dir / class_name
    for candidate in (folder / "points.xyz", models_dir / f"{class_name}.xyz"):
        if candidate.is_file():
            return _read_xyz(candidate)
    meshes = sorted(p for p in folder.glob("*") if p.suffix.lower() in MESH_SUFFIXES) if folder.is_dir() else []
    meshes += [models_dir / f"{class_name}{s}" for s in MESH_SUFFIXES if (models_dir / f"{class_name}{s}").is_file()]
    if not meshes:
        raise DopeError(
            f"--models {models_dir}: no model points for class '{class_name}' "
            f"(expected {folder}/points.xyz, {class_name}.xyz or a mesh)"
        )
    import trimesh

    try:
        mesh = trimesh.load(meshes[0], force="mesh", process=False)
    except Exception as err:  # trimesh raises many types for broken files
        raise DopeError(f"{meshes[0]}: cannot read mesh ({err})") from None
    return np.asarray(mesh.vertices, dtype=np.float64)


def _read_xyz(path: Path) -> np.ndarray:
    try:
        points = np.loadtxt(path, usecols=(0, 1, 2), ndmin=2)
    except ValueError as err:
        raise DopeError(f"{path}: expected lines of 'x y z' numbers ({err})") from None
    if len(points) == 0:
        raise DopeError(f"{path}: no points")
    return points


def annotation_files(folder: Path, option: str) -> dict[str, Path]:
    """Image stem -> JSON path for every annotation in a folder (recursively, manifest excluded)."""
    if not folder.is_dir():
        raise DopeError(f"{option} {folder}: not a folder")
    # Hidden files are write_atomically's temporaries (left behind only by a killed run).
    skipped = (MANIFEST_NAME, METRICS_NAME)
    files = {p.stem: p for p in sorted(folder.rglob("*.json")) if p.name not in skipped and not p.name.startswith(".")}
    if not files:
        raise DopeError(f"{option} {folder}: no JSON files")
    return files


def evaluate_folders(
    pred_dir: Path, gt_dir: Path, models_dir: Path, symmetric: list[str], min_visibility: float = 0.0
) -> dict:
    """Match every ground-truth JSON with the prediction of the same stem (none = all missed)."""
    images = read_image_pairs(pred_dir, gt_dir, min_visibility)

    def class_model(class_name: str) -> tuple[np.ndarray, bool]:
        # ADD-S by default for a class with symmetries in the models folder
        return load_model_points(models_dir, class_name), symmetries_in_folder(models_dir, class_name).symmetric

    return score_images(images, len(images), class_model, set(symmetric))


def read_image_pairs(pred_dir: Path, gt_dir: Path, min_visibility: float = 0.0) -> list[tuple[list[Instance], list[Instance]]]:
    """(ground truth, predictions) of every ground-truth JSON and the prediction of the same stem."""
    truths_by_stem = annotation_files(gt_dir, "--gt")
    preds_by_stem = annotation_files(pred_dir, "--pred")
    if not set(truths_by_stem) & set(preds_by_stem):
        raise DopeError(
            f"--gt {gt_dir} and --pred {pred_dir} share no file stem (e.g. {next(iter(truths_by_stem))}.json and "
            f"{next(iter(preds_by_stem))}.json): predictions are matched to ground truth by file name"
        )
    unmatched = sorted(set(preds_by_stem) - set(truths_by_stem))
    if unmatched:
        log.warning("%d prediction files have no ground truth (e.g. %s); ignored", len(unmatched), unmatched[0])
    return [
        (read_instances(gt_path, min_visibility), read_instances(preds_by_stem[stem]) if stem in preds_by_stem else [])
        for stem, gt_path in truths_by_stem.items()
    ]


def score_images(
    images: Iterable[tuple[list[Instance], list[Instance]]], image_count: int,
    class_model: Callable[[str], tuple[np.ndarray, bool]], symmetric: set[str],
) -> dict:
    """Metrics over (ground truth, predictions) per image; `class_model(name)` gives a class's model
    points (metres) and whether it has symmetries (then it is scored with ADD-S, as `symmetric`)."""
    results: dict[str, ClassResult] = defaultdict(ClassResult)
    points: dict[str, np.ndarray] = {}
    symmetric = set(symmetric)
    for truths, predictions in images:
        for class_name in sorted({i.class_name for i in truths + predictions}):
            if class_name not in points:
                points[class_name], has_symmetries = class_model(class_name)
                if has_symmetries:
                    symmetric.add(class_name)
            match_image(
                [p for p in predictions if p.class_name == class_name],
                [t for t in truths if t.class_name == class_name],
                points[class_name], class_name in symmetric, results[class_name],
            )
    return {
        "images": image_count,
        "thresholds_m": list(THRESHOLDS_M),
        "auc_max_m": AUC_MAX_M,
        "classes": {c: summarise(r, c in symmetric) for c, r in sorted(results.items())},
    }


def write_metrics(metrics: dict, out_dir: Path) -> tuple[Path, Path]:
    """metrics.json and accuracy_curve.png in out_dir (atomically)."""
    json_path = write_atomically(out_dir / METRICS_NAME, lambda tmp: tmp.write_text(json.dumps(metrics, indent=2)))
    return json_path, plot_accuracy_curve(metrics, out_dir / "accuracy_curve.png")


def plot_accuracy_curve(metrics: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thresholds = np.linspace(0.0, AUC_MAX_M, 201)
    figure, axes = plt.subplots(figsize=(5, 4))
    for class_name, summary in metrics["classes"].items():
        errors = np.array([np.inf if e is None else e for e in summary["errors_m"]])
        axes.plot(thresholds * 100, accuracy_at(errors, tuple(thresholds)),
                  label=f"{class_name} ({summary['metric']}, AUC {summary['auc'] * 100:.1f})")
    axes.set(xlabel="threshold (cm)", ylabel="accuracy", xlim=(0, AUC_MAX_M * 100), ylim=(0, 1.02),
             title="Pose accuracy vs. ADD threshold")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    write_atomically(path, lambda tmp: figure.savefig(tmp, dpi=120))
    plt.close(figure)
    return path


def metrics_table(metrics: dict):
    """A rich Table of the per-class summary."""
    from rich.table import Table

    table = Table(title=f"Pose accuracy ({metrics['images']} images)")
    for column in ("class", "metric", "GT", "matched", "missed", "false pos.", "<2cm", "<5cm", "<10cm", "AUC", "2D px"):
        table.add_column(column, justify="left" if column == "class" else "right", no_wrap=column == "class")
    for class_name, s in metrics["classes"].items():
        acc = s["accuracy"]
        keypoint = s["mean_keypoint_error_px"]
        table.add_row(
            class_name, s["metric"], str(s["ground_truth"]), str(s["matched"]), str(s["missed"]),
            str(s["false_positives"]), f"{acc['0.02']:.2f}", f"{acc['0.05']:.2f}", f"{acc['0.10']:.2f}",
            f"{s['auc'] * 100:.1f}", "-" if keypoint is None else f"{keypoint:.1f}",
        )
    return table
