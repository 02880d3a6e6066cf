"""`scene: tabletop`: targets and distractors dropped onto a table with physics, seen from above it.

Real photos of known objects show them standing or lying on a surface in stable poses, at any yaw,
touching and hiding each other, from a camera above the table. This module builds such a scene in a
table frame (z up, the table top at z = 0) and hands `scene.sample_scene` the instances' poses in
the camera frame.

Placement is a short pybullet drop-and-settle (`settle`): each object gets its convex hull as
collision shape, starts a few millimetres above the table (or above the objects under it) and falls
until every body rests. pybullet was chosen over trimesh's stable poses plus collision checks
because the drop also gives what real clutter has: objects touching, leaning on and propped against
each other, in poses stable as a set, not only one by one. Physics runs in its own DIRECT client,
reset for every frame, with the same commands in the same order for (seed, i): frame i still depends
only on (seed, i), in any process, locally or on Ray. Cost: `benchmarks/bench_generate.py --scene
tabletop` measures it per frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.spatial.transform import Rotation

from .geometry import Intrinsics, Pose

log = logging.getLogger(__name__)

GRAVITY = 9.81
TIME_STEP = 1.0 / 120.0  # half pybullet's default step: still stable contacts for centimetre-sized bodies
MAX_SETTLE_STEPS = 240  # 2 simulated seconds; a drop of a few millimetres settles in well under one
CHECK_EVERY = 6
REST_LINEAR_SPEED = 0.01  # m/s: below this (and REST_ANGULAR_SPEED) for every body, the scene rests
REST_ANGULAR_SPEED = 0.1  # rad/s
DROP_GAP = 0.004  # m between an object's lowest point and what lies under it at the start
FRICTION, ROLLING_FRICTION, DAMPING = 0.7, 0.02, 0.1  # rolling friction: spheres and cans come to rest
CLUTTER_RADIUS = (0.06, 0.30)  # m: object centres start in a disc of this radius (drawn per frame)
LOOK_AT_JITTER = 0.06  # m: standard deviation of the look-at point around a target's centre

# Table frame (z up) -> the environment map's frame (y up): x -> x, y -> -z, z -> y.
ENVIRONMENT_FROM_TABLE = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])

# Intrinsics of common RGB-D cameras' colour streams at 640x480 (fx, fy, cx, cy), scaled to the
# frame size by `preset_intrinsics`.
CAMERA_PRESETS = {
    "ycbv": (1066.778, 1067.487, 312.9869, 241.3109),  # YCB-Video (Asus Xtion), BOP's camera_uw
    "primesense": (572.4114, 573.57043, 325.2611, 242.04899),  # LineMOD / Occlusion-LineMOD
    "realsense_d435": (615.0, 615.0, 320.0, 240.0),  # Intel RealSense D435 colour, 640x480 mode
}

# Rotations (model -> table) that put each of a z-up model's six box faces on the table, the first
# being upright (model +z up): targets use the first with probability 1 - other_faces.
RESTING_FACES = (
    np.eye(3),
    Rotation.from_euler("x", 180, degrees=True).as_matrix(),
    Rotation.from_euler("x", 90, degrees=True).as_matrix(),
    Rotation.from_euler("x", -90, degrees=True).as_matrix(),
    Rotation.from_euler("y", 90, degrees=True).as_matrix(),
    Rotation.from_euler("y", -90, degrees=True).as_matrix(),
)


@dataclass(frozen=True)
class Body:
    """One object to drop: its convex hull (model frame, scaled) and its starting rotation."""

    hull: np.ndarray  # (N, 3) convex hull vertices in metres
    rotation: np.ndarray  # (3, 3) model -> table


def preset_intrinsics(name: str, width: int, height: int) -> Intrinsics:
    """A CAMERA_PRESETS camera scaled to `width` (same pixel aspect), centre-cropped to `height`."""
    fx, fy, cx, cy = CAMERA_PRESETS[name]
    s = width / 640.0
    return Intrinsics(fx * s, fy * s, cx * s, cy * s - (480.0 * s - height) / 2.0, width, height)


@lru_cache(maxsize=1)
def _client() -> int:
    """This process's pybullet DIRECT client (no GUI, no threads)."""
    import pybullet

    return pybullet.connect(pybullet.DIRECT)


def settle(bodies: list[Body], positions_xy: np.ndarray, yaws: np.ndarray) -> tuple[list[Pose], bool]:
    """Drop `bodies` at `positions_xy` (m) turned by `yaws` (rad) about the table normal and let them
    settle. Returns each body's pose (model -> table) and whether everything came to rest in time."""
    import pybullet

    client = _client()
    pybullet.resetSimulation(physicsClientId=client)
    pybullet.setGravity(0.0, 0.0, -GRAVITY, physicsClientId=client)
    pybullet.setTimeStep(TIME_STEP, physicsClientId=client)
    plane = pybullet.createCollisionShape(pybullet.GEOM_PLANE, physicsClientId=client)
    floor = pybullet.createMultiBody(0.0, plane, physicsClientId=client)
    pybullet.changeDynamics(floor, -1, lateralFriction=FRICTION, physicsClientId=client)
    ids, footprints = [], []  # footprint: (centre xy, radius, top z) of the bodies placed so far
    for body, xy, yaw in zip(bodies, positions_xy, yaws):
        rotation = Rotation.from_euler("z", yaw).as_matrix() @ body.rotation
        points = body.hull @ rotation.T
        radius = float(np.linalg.norm(points[:, :2] - points[:, :2].mean(axis=0), axis=1).max())
        centre_xy = xy - points[:, :2].mean(axis=0)  # the hull's xy centre lands on `xy`
        below = [top for c, r, top in footprints if np.linalg.norm(c - xy) < r + radius]
        base = max(below, default=0.0) + DROP_GAP
        translation = np.array([centre_xy[0], centre_xy[1], base - points[:, 2].min()])
        footprints.append((xy, radius, translation[2] + points[:, 2].max()))
        ids.append(_add_body(client, body.hull, rotation, translation))
    rested = _run_until_rest(client, ids)
    poses = []
    for body, body_id in zip(bodies, ids):
        # pybullet reports the body frame, which sits at the hull's centroid (see _add_body).
        position, quaternion = pybullet.getBasePositionAndOrientation(body_id, physicsClientId=client)
        rotation = Rotation.from_quat(quaternion).as_matrix()
        poses.append(Pose(rotation, np.asarray(position, dtype=np.float64) - rotation @ body.hull.mean(axis=0)))
    return poses, rested


def _add_body(client: int, hull: np.ndarray, rotation: np.ndarray, translation: np.ndarray) -> int:
    """A body for a model at (rotation, translation), its frame moved to the hull's centroid, which
    is then its centre of mass (uniform density is close enough for resting poses)."""
    import pybullet

    centroid = hull.mean(axis=0)
    shape = pybullet.createCollisionShape(pybullet.GEOM_MESH, vertices=(hull - centroid).tolist(), physicsClientId=client)
    mass = max(0.05, 500.0 * float(np.prod(np.ptp(hull, axis=0))))  # ~half the density of water
    body = pybullet.createMultiBody(
        mass, shape, basePosition=(translation + rotation @ centroid).tolist(),
        baseOrientation=Rotation.from_matrix(rotation).as_quat().tolist(), physicsClientId=client,
    )
    pybullet.changeDynamics(
        body, -1, lateralFriction=FRICTION, rollingFriction=ROLLING_FRICTION, spinningFriction=ROLLING_FRICTION,
        restitution=0.0, linearDamping=DAMPING, angularDamping=DAMPING, physicsClientId=client,
    )
    return body


def _run_until_rest(client: int, ids: list[int]) -> bool:
    import pybullet

    for step in range(1, MAX_SETTLE_STEPS + 1):
        pybullet.stepSimulation(physicsClientId=client)
        if step % CHECK_EVERY == 0 and all(_at_rest(pybullet.getBaseVelocity(i, physicsClientId=client)) for i in ids):
            return True
    return False


def _at_rest(velocity: tuple) -> bool:
    linear, angular = velocity
    return float(np.linalg.norm(linear)) < REST_LINEAR_SPEED and float(np.linalg.norm(angular)) < REST_ANGULAR_SPEED


def camera_on_cap(
    rng: np.random.Generator, look_at: np.ndarray, elevation_deg: tuple[float, float],
    distance_m: tuple[float, float], roll_deg: float,
) -> tuple[np.ndarray, np.ndarray]:
    """A camera (OpenCV axes) on the sphere cap around `look_at`: any azimuth, an elevation above the
    table and a distance drawn from their ranges, rolled about its optical axis. Returns
    (table_from_camera rotation, camera position in the table frame)."""
    azimuth = rng.uniform(0.0, 2.0 * np.pi)
    elevation = np.radians(rng.uniform(*elevation_deg))
    distance = rng.uniform(*distance_m)
    roll = np.radians(rng.uniform(-roll_deg, roll_deg))
    position = look_at + distance * np.array(
        [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)]
    )
    forward = (look_at - position) / distance
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    level = np.stack([right, down, forward], axis=1)  # columns: camera x, y, z in the table frame
    return level @ Rotation.from_euler("z", roll).as_matrix(), position


def camera_elevation_deg(table_from_camera: np.ndarray) -> float:
    """How far the optical axis points down from the table's horizon (degrees)."""
    return float(np.degrees(np.arcsin(-table_from_camera[2, 2])))
