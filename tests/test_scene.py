"""Scene sampling (flying scenes; tabletop ones in test_tabletop.py): frame i depends only on (seed, i);
counts, placement, ids and choices follow the config."""

from __future__ import annotations

import numpy as np
import pytest

from dope_stream.config import GenerateConfig
from dope_stream.scene import camera_intrinsics, sample_scene


def _poses(scene) -> list[np.ndarray]:
    return [i.pose.matrix for i in scene.instances]


def test_frame_depends_only_on_seed_and_index(default_assets):
    config = GenerateConfig(scene="flying", seed=3)
    first = sample_scene(config, default_assets, 10)
    assert np.array_equal(_poses(first), _poses(sample_scene(config, default_assets, 10)))
    sample_scene(config, default_assets, 11)  # sampling other frames in between changes nothing
    assert sample_scene(config, default_assets, 10).lighting.yaw_deg == first.lighting.yaw_deg
    assert not np.array_equal(_poses(first)[0], _poses(sample_scene(config, default_assets, 11))[0])
    assert not np.array_equal(_poses(first)[0], _poses(sample_scene(GenerateConfig(scene="flying", seed=4), default_assets, 10))[0])


def test_renderer_choice_does_not_change_the_scene(default_assets):
    raster = [sample_scene(GenerateConfig(scene="flying"), default_assets, i) for i in range(40)]
    mixed = [sample_scene(GenerateConfig(scene="flying", renderer="mix", mix_fraction=0.5), default_assets, i) for i in range(40)]
    for a, b in zip(raster, mixed):
        assert np.array_equal(_poses(a), _poses(b)) and a.background == b.background
    chosen = [s.renderer for s in mixed]
    assert {"raster", "pathtrace"} == set(chosen) and 8 < chosen.count("pathtrace") < 32
    assert all(s.renderer == "raster" for s in raster)


def test_counts_ids_names_and_placement(default_assets):
    config = GenerateConfig(scene="flying", nb_objects=(2, 4), nb_distractors=(3, 6), width=200, height=100, depth_range=(0.5, 0.9))
    intrinsics = camera_intrinsics(config)
    seen_counts = set()
    for index in range(30):
        scene = sample_scene(config, default_assets, index)
        targets = scene.targets
        distractors = [i for i in scene.instances if not i.is_target]
        seen_counts.add(len(targets))
        assert 2 <= len(targets) <= 4 and 3 <= len(distractors) <= 6
        assert [i.segmentation_id for i in scene.instances] == list(range(1, len(scene.instances) + 1))
        assert [t.name for t in targets] == [f"003_cracker_box_{k}" for k in range(len(targets))]
        cuboid = default_assets.cuboid("003_cracker_box")
        for target in targets:
            rotation = target.pose.rotation
            assert np.allclose(rotation @ rotation.T, np.eye(3)) and np.linalg.det(rotation) == pytest.approx(1.0)
            center = target.pose.apply(np.array([cuboid.center]))[0]
            assert 0.5 - 1e-9 <= np.linalg.norm(center) <= 0.9 + 1e-9
            u = intrinsics.fx * center[0] / center[2] + intrinsics.cx
            v = intrinsics.fy * center[1] / center[2] + intrinsics.cy
            assert -0.5 <= u <= 199.5 and -0.5 <= v <= 99.5
        for distractor in distractors:
            assert 0.7 <= distractor.scale <= 1.3 and distractor.mesh_key in default_assets.meshes
    assert seen_counts == {2, 3, 4}


def test_intrinsics_from_fov_or_given():
    assert camera_intrinsics(GenerateConfig(scene="flying", width=640, height=480, fov=90)).fx == pytest.approx(320.0)
    given = camera_intrinsics(GenerateConfig(scene="flying", width=640, height=480, intrinsics="500,510,300,250"))
    assert (given.fx, given.fy, given.cx, given.cy, given.width, given.height) == (500, 510, 300, 250, 640, 480)


def test_backgrounds_and_distractor_sources(default_assets):
    photos = [sample_scene(GenerateConfig(scene="flying", photo_background=1.0), default_assets, i).background for i in range(20)]
    assert all(b.mode == "photo" and b.photo_key in default_assets.backgrounds for b in photos)
    hdr_only = [sample_scene(GenerateConfig(scene="flying", photo_background=0.0), default_assets, i).background for i in range(20)]
    assert all(b.mode == "hdri" for b in hdr_only)
    procedural = GenerateConfig(scene="flying", procedural_distractors=1.0, nb_distractors=10)
    keys = {i.mesh_key for s in range(10) for i in sample_scene(procedural, default_assets, s).instances if not i.is_target}
    assert keys <= set(default_assets.procedural) and len(keys) > 3
    loaded = GenerateConfig(scene="flying", procedural_distractors=0.0, nb_distractors=10)
    keys = {i.mesh_key for s in range(10) for i in sample_scene(loaded, default_assets, s).instances if not i.is_target}
    assert keys <= set(default_assets.distractors)
    lights = {sample_scene(GenerateConfig(scene="flying"), default_assets, i).lighting.hdri_key for i in range(200)}
    assert lights == set(default_assets.hdris)


# Model +x toward the camera (-z), +z up (-y), +y right (+x), written here independently of scene.py.
UPRIGHT_REFERENCE = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])


def _degrees_from_reference(rotation: np.ndarray) -> float:
    cos = (np.trace(UPRIGHT_REFERENCE.T @ rotation) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(cos, -1, 1))))


def test_max_rotation_keeps_targets_near_upright_facing_the_camera(default_assets):
    config = GenerateConfig(scene="flying", nb_objects=(2, 2), max_rotation=30.0)
    rotations = [t.pose.rotation for i in range(40) for t in sample_scene(config, default_assets, i).targets]
    angles = [_degrees_from_reference(r) for r in rotations]
    assert max(angles) <= 30.0 + 1e-6 and max(angles) > 20.0  # bounded, and the range is used
    # The model's +z axis in camera coordinates points up in the image (camera -y).
    assert min(-r[1, 2] for r in rotations) >= np.cos(np.radians(30.0)) - 1e-9
    # The default is every orientation: some targets lie far from the reference.
    uniform = [t.pose.rotation for i in range(20) for t in sample_scene(GenerateConfig(scene="flying"), default_assets, i).targets]
    assert max(_degrees_from_reference(r) for r in uniform) > 90.0
