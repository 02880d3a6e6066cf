"""Asset library: built-in assets, unit scales, procedural shapes, and clear errors for bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dope_stream.assets import PROCEDURAL_SHAPES, build_asset_library, load_mesh, target_cuboids
from dope_stream.config import PACKAGE_ASSETS, GenerateConfig
from dope_stream.errors import DopeError


def test_default_library(default_assets):
    assert default_assets.targets == {"003_cracker_box": "target/003_cracker_box"}
    assert len(default_assets.hdris) == 18 and len(default_assets.backgrounds) == 40
    assert len(default_assets.procedural) == len(PROCEDURAL_SHAPES)
    target = default_assets.meshes["target/003_cracker_box"]
    assert target.texture is not None and target.uv.shape == (len(target.vertices), 2)
    # The YCB mesh is kept in its own frame: the cuboid centre is the AABB centre from info.json.
    info = json.loads((PACKAGE_ASSETS / "objects" / "003_cracker_box" / "info.json").read_text())
    cuboid = default_assets.cuboid("003_cracker_box")
    np.testing.assert_allclose(cuboid.extent, info["extent_xyz_m"], atol=1e-5)
    np.testing.assert_allclose(cuboid.center, info["bbox_center_m"], atol=1e-5)


def test_random_urdf_distractors_are_scaled_to_metres(default_assets):
    info = json.loads((PACKAGE_ASSETS / "distractors" / "random_urdfs" / "info.json").read_text())
    for stem, entry in info["objects"].items():
        mesh = default_assets.meshes[f"distractor/random_urdfs/{entry['obj']}"]
        np.testing.assert_allclose(mesh.cuboid.extent, entry["extent_xyz_m_after_scale"], atol=6e-4)


def test_procedural_shapes_have_their_sizes(default_assets):
    box = default_assets.meshes["procedural/box_flat"]
    np.testing.assert_allclose(box.cuboid.extent, PROCEDURAL_SHAPES["box_flat"][1], atol=1e-6)
    sphere = default_assets.meshes["procedural/sphere_large"]
    np.testing.assert_allclose(sphere.cuboid.extent, [0.12] * 3, atol=1e-3)
    for key in default_assets.procedural:
        mesh = default_assets.meshes[key]
        assert len(mesh.faces) > 0 and mesh.uv is not None and (0 <= mesh.uv).all() and (mesh.uv <= 1).all()


def test_scale_and_class_names(tmp_path):
    obj = PACKAGE_ASSETS / "objects" / "003_cracker_box" / "model.obj"
    cuboids = target_cuboids(GenerateConfig(obj=[obj], class_names=["cracker"], scale=100.0))
    assert list(cuboids) == ["cracker"] and cuboids["cracker"].extent[2] == pytest.approx(21.34, abs=0.01)


def test_without_distractor_folder_or_backgrounds():
    library = build_asset_library(GenerateConfig(distractors=None, backgrounds=None))
    assert library.distractors == [] and library.backgrounds == {} and library.procedural


def test_vertex_coloured_ply(tmp_path):
    import trimesh

    mesh = trimesh.creation.box(extents=(1, 2, 3))
    mesh.visual.vertex_colors = np.tile([[255, 0, 0, 255], [0, 0, 255, 255]], (4, 1))
    mesh.export(tmp_path / "coloured.ply")
    asset = load_mesh(tmp_path / "coloured.ply", "c", scale=0.01)
    assert asset.vertex_colors is not None and asset.cuboid.extent == pytest.approx((0.01, 0.02, 0.03))


@pytest.mark.parametrize(
    "option, make, message",
    [
        ("hdri", lambda d: d, "holds no HDR maps"),
        ("backgrounds", lambda d: d, "holds no images"),
        ("distractors", lambda d: d, "holds no distractor meshes"),
        ("hdri", lambda d: d / "missing", "does not exist"),
    ],
)
def test_folder_errors_name_the_option(tmp_path, option, make, message):
    with pytest.raises(DopeError, match=f"{option}: folder .*{message}"):
        build_asset_library(GenerateConfig(**{option: make(tmp_path)}))


def test_unreadable_hdr_is_named(tmp_path):
    (tmp_path / "sky.hdr").write_bytes(b"#?RADIANCE\nbroken")
    with pytest.raises(DopeError, match="sky.hdr"):
        build_asset_library(GenerateConfig(hdri=tmp_path))
