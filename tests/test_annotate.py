"""Annotations: projected cuboids against an independent projection and against rendered masks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dope_stream.annotate import annotate
from dope_stream.assets import AssetLibrary, load_hdri
from dope_stream.config import PACKAGE_ASSETS, GenerateConfig
from dope_stream.geometry import Intrinsics, Pose, random_rotation
from dope_stream.render import RenderLayers
from dope_stream.scene import Background, Instance, Lighting, Material, SceneSpec, sample_scene

from conftest import box_mesh

# Corner signs copied from the DOPE reference table (not from dope_stream.geometry).
REFERENCE_SIGNS = [(+1, -1, +1), (-1, -1, +1), (-1, +1, +1), (+1, +1, +1), (+1, -1, -1), (-1, -1, -1), (-1, +1, -1), (+1, +1, -1)]


def quaternion_xyzw_to_matrix(q) -> np.ndarray:
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def independent_cuboid_projection(vertices: np.ndarray, annotation_object: dict, camera_data: dict) -> np.ndarray:
    """AABB corners + centre of the mesh, moved by the stored pose and projected with the stored K."""
    lo, hi = vertices.min(axis=0).astype(np.float64), vertices.max(axis=0).astype(np.float64)
    center, half = (lo + hi) / 2, (hi - lo) / 2
    points = np.array([center + half * np.array(s) for s in REFERENCE_SIGNS] + [center])
    rotation = quaternion_xyzw_to_matrix(annotation_object["quaternion_xyzw"])
    camera_points = points @ rotation.T + np.array(annotation_object["location"])
    k = camera_data["intrinsics"]
    matrix = np.array([[k["fx"], 0, k["cx"]], [0, k["fy"], k["cy"]], [0, 0, 1.0]])
    homogeneous = camera_points @ matrix.T
    return homogeneous[:, :2] / homogeneous[:, 2:]


def test_projected_cuboid_matches_independent_projection(default_assets):
    config = GenerateConfig(scene="flying", nb_objects=(5, 5), nb_distractors=(0, 0), width=320, height=240, fov=70)
    vertices = default_assets.meshes[default_assets.targets["003_cracker_box"]].vertices
    for index in range(4):
        scene = sample_scene(config, default_assets, index)
        empty = RenderLayers(
            rgb=np.zeros((240, 320, 3), np.uint8),
            instance_id=np.zeros((240, 320), np.uint16),
            depth=np.zeros((240, 320), np.float32),
            full_pixel_counts={t.segmentation_id: 0 for t in scene.targets},
        )
        annotation = annotate(scene, empty, default_assets)
        assert len(annotation["objects"]) == 5
        for obj in annotation["objects"]:
            expected = independent_cuboid_projection(vertices, obj, annotation["camera_data"])
            np.testing.assert_allclose(np.array(obj["projected_cuboid"]), expected, atol=0.01)
            assert obj["visibility"] == 0.0 and obj["bounding_box_minx_maxx_miny_maxy"] == [-1, -1, -1, -1]


@pytest.fixture(scope="module")
def box_renderer():
    from dope_stream.render.raster import RasterRenderer

    assets = AssetLibrary()
    # Model origin off the box centre: annotations must not assume centred meshes.
    assets.meshes["target/box"] = box_mesh("target/box", (0.08, 0.12, 0.05), offset=(0.02, -0.03, 0.01))
    assets.meshes["blocker"] = box_mesh("blocker", (0.1, 0.3, 0.05))
    assets.targets["box"] = "target/box"
    assets.hdris["studio"] = load_hdri(PACKAGE_ASSETS / "hdri" / "pmndrs_studio.hdr")
    renderer = RasterRenderer(assets)
    yield assets, renderer
    renderer.close()


def _scene(instances: list[Instance], intrinsics: Intrinsics) -> SceneSpec:
    return SceneSpec(0, intrinsics, tuple(instances), Lighting("studio", 0.0, 1.0), Background("hdri"), spp=1)


def test_rendered_mask_lies_in_the_projected_cuboid_hull(box_renderer):
    assets, renderer = box_renderer
    intrinsics = Intrinsics(150.0, 150.0, 62.3, 65.8, 128, 128)
    rng = np.random.default_rng(7)
    for trial in range(4):
        rotation = random_rotation(rng)
        center_camera = np.array([rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05), rng.uniform(0.45, 0.6)])
        pose = Pose(rotation, center_camera - rotation @ np.array([0.02, -0.03, 0.01]))
        target = Instance("target/box", pose, Material(), 1, "box", "box_0")
        scene = _scene([target], intrinsics)
        layers = renderer.render(scene)
        obj = annotate(scene, layers, assets)["objects"][0]
        mask = layers.instance_id == 1
        assert obj["visibility"] == pytest.approx(1.0) and obj["px_count_visib"] == mask.sum() > 200
        hull = cv2.convexHull(np.array(obj["projected_cuboid"][:8], dtype=np.float32))
        hull_mask = np.zeros(mask.shape, np.uint8)
        cv2.fillConvexPoly(hull_mask, np.round(hull[:, 0] * 16).astype(np.int32), 1, shift=4)
        hull_mask = cv2.dilate(hull_mask, np.ones((3, 3), np.uint8))  # half a pixel of rasterisation slack
        assert not (mask & (hull_mask == 0)).any(), f"trial {trial}: mask pixels outside the cuboid hull"
        rows, columns = np.nonzero(mask)
        hull_points = hull[:, 0]
        assert abs(columns.min() - hull_points[:, 0].min()) < 1.5 and abs(columns.max() - hull_points[:, 0].max()) < 1.5
        assert abs(rows.min() - hull_points[:, 1].min()) < 1.5 and abs(rows.max() - hull_points[:, 1].max()) < 1.5
        assert obj["bounding_box_minx_maxx_miny_maxy"] == [columns.min(), columns.max(), rows.min(), rows.max()]


def test_visibility_of_a_half_covered_target(box_renderer):
    assets, renderer = box_renderer
    intrinsics = Intrinsics(200.0, 200.0, 63.5, 63.5, 128, 128)
    # A fronto-parallel target centred on the optical axis and a nearer, taller blocker whose right
    # edge projects onto the target's centre column: the left half of the target is hidden.
    target_pose = Pose(np.eye(3), np.array([0.0, 0.0, 0.6]) - np.array([0.02, -0.03, 0.01]))
    blocker_depth = 0.4
    blocker_right_edge = 0.0 * blocker_depth  # x / z = 0 at the optical axis
    blocker_pose = Pose(np.eye(3), np.array([blocker_right_edge - 0.05, 0.0, blocker_depth]))
    scene = _scene(
        [
            Instance("target/box", target_pose, Material(), 1, "box", "box_0"),
            Instance("blocker", blocker_pose, Material(color=(0.2, 0.4, 0.9)), 2),
        ],
        intrinsics,
    )
    layers = renderer.render(scene)
    obj = annotate(scene, layers, assets)["objects"][0]
    assert obj["px_count_all"] == layers.full_pixel_counts[1]
    assert obj["visibility"] == pytest.approx(0.5, abs=0.04)
    assert obj["px_count_visib"] == (layers.instance_id == 1).sum()
    # The visible part is the right half: its box starts at the image centre column.
    minx, maxx, miny, maxy = obj["bounding_box_minx_maxx_miny_maxy"]
    assert abs(minx - 63.5) <= 1.0


def test_hidden_target_is_kept_with_zero_visibility(box_renderer):
    assets, renderer = box_renderer
    intrinsics = Intrinsics(200.0, 200.0, 63.5, 63.5, 128, 128)
    scene = _scene(
        [
            Instance("target/box", Pose(np.eye(3), np.array([0.0, 0.0, 0.8])), Material(), 1, "box", "box_0"),
            Instance("blocker", Pose(np.eye(3), np.array([0.0, 0.0, 0.3])), Material(), 2),
        ],
        intrinsics,
    )
    obj = annotate(scene, renderer.render(scene), assets)["objects"][0]
    assert obj["visibility"] == 0.0 and obj["px_count_visib"] == 0 and obj["px_count_all"] > 0
    assert obj["bounding_box_minx_maxx_miny_maxy"] == [-1, -1, -1, -1]


def test_pixel_counts_and_boxes_of_targets_behind_the_camera_plane_and_cut_by_the_border(box_renderer):
    # The annotation counts pixels inside each projected cuboid's box; a cuboid with corners behind
    # the camera bounds nothing, and one cut by the image border must be clipped to it.
    assets, renderer = box_renderer
    intrinsics = Intrinsics(150.0, 150.0, 63.5, 63.5, 128, 128)
    offset = np.array([0.02, -0.03, 0.01])  # the box's model origin, off its centre
    straddling = Pose(np.eye(3), np.array([0.05, 0.04, 0.02]) - offset)  # z from -0.005 to 0.045 m
    cut = Pose(random_rotation(np.random.default_rng(3)), np.array([-0.22, -0.05, 0.5]))
    scene = _scene([Instance("target/box", straddling, Material(), 1, "box", "box_0"),
                    Instance("target/box", cut, Material(), 2, "box", "box_1")], intrinsics)
    layers = renderer.render(scene)
    objects = annotate(scene, layers, assets)["objects"]
    corners_z = straddling.apply(assets.cuboid("box").keypoints())[:, 2]
    assert corners_z.min() < 0 < corners_z.max()
    assert np.array(objects[1]["projected_cuboid"])[:, 0].min() < 0  # reaches past the left border
    for obj in objects:
        rows, columns = np.nonzero(layers.instance_id == obj["segmentation_id"])
        assert obj["px_count_visib"] == len(rows) > 50
        assert obj["bounding_box_minx_maxx_miny_maxy"] == [columns.min(), columns.max(), rows.min(), rows.max()]
