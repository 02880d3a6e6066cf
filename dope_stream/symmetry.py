"""Object symmetries (BOP's `symmetries_discrete` / `symmetries_continuous`) and the canonical pose.

A symmetric object looks the same in a pose P and in P * S for every symmetry S of its mesh, so
cuboid keypoints projected from the pose as annotated give one image two labellings (corner 0 here
in one frame, there in the next) and the network learns their average. The fix (the reference's
NVISII generator does the same with its `model_info.json`): among all poses equivalent to the
annotated one, label the one whose model axes are best aligned with the camera axes, i.e. the P * S
that maximises trace(R_P * R_S). It depends only on the equivalence class, hence only on what the
image shows; PnP then recovers that pose, and evaluation compares poses with ADD-S.

Symmetry transforms act in the model frame (p -> R p + t), metres here; BOP files hold millimetres
(translations of discrete symmetries, offsets of continuous axes) and are converted on reading.
Imports numpy and this package's geometry and errors only, so every stage can use it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DopeError
from .geometry import Pose

log = logging.getLogger(__name__)

MM = 0.001  # BOP lengths are millimetres


@dataclass(frozen=True, eq=False)
class Symmetries:
    """An object's symmetry group: `discrete` (K, 4, 4) transforms besides the identity, and
    `continuous` rotation axes, each (direction (3,), a point on it (3,)) in the model frame, metres."""

    discrete: np.ndarray
    continuous: tuple[tuple[np.ndarray, np.ndarray], ...] = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Symmetries) and self.to_dict() == other.to_dict()

    __hash__ = None  # mutable arrays inside

    @property
    def symmetric(self) -> bool:
        return len(self.discrete) > 0 or len(self.continuous) > 0

    def to_dict(self) -> dict:
        return {
            "discrete": [t.ravel().tolist() for t in self.discrete],
            "continuous": [{"axis": a.tolist(), "offset": o.tolist()} for a, o in self.continuous],
        }

    @staticmethod
    def from_dict(values: dict, unit: float = 1.0, where: str = "symmetries") -> "Symmetries":
        """From this project's dict (metres) or BOP's keys (`symmetries_discrete` etc., `unit` MM)."""
        discrete = values.get("discrete", values.get("symmetries_discrete", []))
        continuous = values.get("continuous", values.get("symmetries_continuous", []))
        try:
            transforms = np.asarray(discrete, dtype=np.float64).reshape(-1, 4, 4).copy()
            transforms[:, :3, 3] *= unit
            axes = tuple(
                (_unit_vector(np.asarray(c["axis"], dtype=np.float64), where),
                 np.asarray(c.get("offset", (0.0, 0.0, 0.0)), dtype=np.float64).reshape(3) * unit)
                for c in continuous
            )
        except (TypeError, ValueError, KeyError) as err:
            raise DopeError(f"{where}: symmetries must be 4x4 matrices (16 numbers) and {{axis, offset}} entries ({err})") from None
        rotations = transforms[:, :3, :3]
        if len(rotations) and not np.allclose(rotations @ rotations.transpose(0, 2, 1), np.eye(3), atol=1e-3):
            raise DopeError(f"{where}: a discrete symmetry is not a rotation (its 3x3 part must be orthonormal)")
        if len(axes) > 1:
            log.warning("%s: %d continuous symmetry axes; only the first is used", where, len(axes))
        return Symmetries(transforms, axes[:1])

    def candidates(self, rotation: np.ndarray) -> np.ndarray:
        """(M, 4, 4) symmetry transforms to consider for an object with this model -> camera rotation:
        the identity and the discrete ones, each combined with the best angle about the continuous axis."""
        group = np.concatenate([np.eye(4)[None], self.discrete])
        if not self.continuous:
            return group
        axis, point = self.continuous[0]
        turns = []
        for discrete in group:
            # trace(R C(theta) D) = trace(D_R R C(theta)): Rodrigues makes it a cos/sin of theta.
            m = discrete[:3, :3] @ rotation
            along = axis @ m @ axis
            cos_part = np.trace(m) - along
            sin_part = np.trace(m @ _cross_matrix(axis))
            turns.append(_rotation_about(axis, point, np.arctan2(sin_part, cos_part)) @ discrete)
        return np.stack(turns)

    def canonical(self, pose: Pose) -> Pose:
        """The pose equivalent to `pose` under this group whose rotation is closest to the camera
        frame's axes (largest trace); `pose` itself for an asymmetric object."""
        if not self.symmetric:
            return pose
        transforms = self.candidates(pose.rotation)
        rotations = pose.rotation @ transforms[:, :3, :3]
        best = int(np.argmax(np.trace(rotations, axis1=1, axis2=2)))
        return Pose(rotations[best], pose.translation + pose.rotation @ transforms[best, :3, 3])


NO_SYMMETRY = Symmetries(np.zeros((0, 4, 4)))


def _unit_vector(vector: np.ndarray, where: str) -> np.ndarray:
    norm = np.linalg.norm(vector)
    if vector.shape != (3,) or norm < 1e-9:
        raise DopeError(f"{where}: a continuous symmetry axis must be 3 numbers, not all zero")
    return vector / norm


def _cross_matrix(v: np.ndarray) -> np.ndarray:
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def _rotation_about(axis: np.ndarray, point: np.ndarray, angle: float) -> np.ndarray:
    """4x4 rotation by `angle` about the line through `point` along the unit `axis`."""
    k = _cross_matrix(axis)
    rotation = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    transform = np.eye(4)
    transform[:3, :3], transform[:3, 3] = rotation, point - rotation @ point
    return transform


def read_symmetries(path: Path, class_names: dict[int, str] | None = None) -> dict[str, Symmetries]:
    """Class name -> Symmetries from a BOP `models_info.json` (keys are object ids; classes are named
    `obj_{id:06d}` as BOP's model files, or by `class_names`) or from one object's `model_info.json`
    (the reference's per-mesh file, returned under the key "" for the caller to name). Millimetres."""
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        raise DopeError(f"symmetries: {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DopeError(f"symmetries: {path} is not valid JSON ({err})") from None
    if not isinstance(content, dict):
        raise DopeError(f"symmetries: {path} must hold a JSON object")
    if any(key in content for key in ("symmetries_discrete", "symmetries_continuous", "discrete", "continuous")):
        return {"": Symmetries.from_dict(content, MM, str(path))}
    found = {}
    for key, info in content.items():
        if not (isinstance(key, str) and key.isdigit() and isinstance(info, dict)):
            raise DopeError(f"symmetries: {path}: key {key!r} is not a BOP object id with its model info")
        name = (class_names or {}).get(int(key), bop_class_name(int(key)))
        found[name] = Symmetries.from_dict(info, MM, f"{path} (object {key})")
    return found


def symmetries_in_folder(models_dir: Path, class_name: str) -> Symmetries:
    """A class's symmetries from a models folder: its entry in DIR/models_info.json (BOP), else
    DIR/CLASS/model_info.json (the reference's per-mesh file); none found: no symmetry."""
    bop_table, own_file = Path(models_dir) / "models_info.json", Path(models_dir) / class_name / "model_info.json"
    if bop_table.is_file():
        found = read_symmetries(bop_table).get(class_name)
        if found is not None:
            return found
    return read_symmetries(own_file)[""] if own_file.is_file() else NO_SYMMETRY


def bop_class_name(obj_id: int) -> str:
    """The class name of a BOP object: its model file's stem."""
    return f"obj_{obj_id:06d}"
