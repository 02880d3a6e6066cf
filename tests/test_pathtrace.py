"""The `pathtrace` backend (Mitsuba 3 + OIDN): same scene and annotations as `raster`, only pixels differ."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("mitsuba", reason="the pathtrace backend needs Mitsuba 3 (pip install 'dope-stream[pathtrace]')")

from dope_app.environment import THREADS_ENV, VARIANT_ENV, threads_from_environment  # noqa: E402
from dope_stream.errors import DopeError  # noqa: E402
from dope_stream.geometry import Intrinsics, Pose  # noqa: E402
from dope_stream.render.pathtrace import (  # noqa: E402
    LLVM_PATH_ENV,
    PathTraceRenderer,
    find_llvm_library,
    point_drjit_at_llvm,
    select_variant,
)
from dope_stream.render.conventions import tonemap_to_srgb8  # noqa: E402
from dope_stream.scene import Background, Instance, Lighting, Material, SceneSpec, camera_tilt  # noqa: E402
from dope_stream.synth import FrameSynthesizer  # noqa: E402

from conftest import tiny_generate_config  # noqa: E402

SIZE = 96


@pytest.fixture(scope="module")
def synthesizers(tmp_path_factory):
    """One raster and one pathtrace FrameSynthesizer over the same (seeded) dataset description."""
    out = tmp_path_factory.mktemp("pathtrace")
    raster = FrameSynthesizer(tiny_generate_config(out, width=SIZE, height=SIZE, spp=2, renderer="raster"))
    pathtrace = FrameSynthesizer(tiny_generate_config(out, width=SIZE, height=SIZE, spp=2, renderer="pathtrace"))
    yield raster, pathtrace
    raster.close()
    pathtrace.close()


@pytest.fixture(scope="module")
def backends(synthesizers):
    raster, pathtrace = synthesizers
    return raster.renderer, pathtrace.renderer, pathtrace.assets


def lone_target_scene(assets, intrinsics: Intrinsics, spp: int, background: Background) -> SceneSpec:
    """The cracker box alone, tilted so three faces show, 0.4 m in front of the camera."""
    mesh_key = next(iter(assets.targets.values()))
    rotation = Pose.from_quaternion_xyzw([0.3, 0.4, 0.1, 0.86], [0, 0, 0]).rotation
    center = np.asarray(assets.meshes[mesh_key].cuboid.center)
    pose = Pose(rotation, np.array([0.0, 0.0, 0.4]) - rotation @ center)
    target = Instance(mesh_key, pose, Material(), 1, "target", "target_0")
    lighting = Lighting(next(iter(assets.hdris)), 40.0, 1.0, camera_tilt(20.0, 0.0))
    return SceneSpec(0, intrinsics, (target,), lighting, background, spp, "pathtrace")


def test_same_seed_gives_identical_annotations_from_both_backends(synthesizers):
    raster, pathtrace = synthesizers
    for index in range(3):
        from_raster, from_pathtrace = raster.render(index), pathtrace.render(index)
        assert from_raster.members["json"] == from_pathtrace.members["json"]
        assert from_raster.members["seg.png"] == from_pathtrace.members["seg.png"]
        assert from_raster.members["depth.png"] == from_pathtrace.members["depth.png"]
        assert from_raster.members["jpg"] != from_pathtrace.members["jpg"]  # the pixels do differ


@pytest.mark.parametrize(
    "intrinsics",
    [
        Intrinsics.from_fov(SIZE, SIZE, 60.0),
        Intrinsics(118.0, 104.0, 41.3, 55.8, SIZE, SIZE),  # fx != fy, principal point off centre
    ],
    ids=["centred", "off-centre-anisotropic"],
)
def test_silhouette_matches_raster_mask(backends, intrinsics):
    raster, pathtrace, assets = backends
    background = Background("photo", next(iter(assets.backgrounds)))
    scene = lone_target_scene(assets, intrinsics, spp=16, background=background)
    covered = pathtrace.render_passes(scene).alpha > 0.5
    mask = raster.render(scene).instance_id > 0
    assert mask.sum() > 0.1 * mask.size
    iou = (covered & mask).sum() / (covered | mask).sum()
    assert iou > 0.95, f"silhouette IoU {iou:.3f}"


def test_environment_background_follows_raster_orientation(backends):
    raster, pathtrace, assets = backends
    hdri_key = next(iter(assets.hdris))

    def empty_scene(yaw_deg: float) -> SceneSpec:
        lighting = Lighting(hdri_key, yaw_deg, 1.3, camera_tilt(25.0, 10.0))
        return SceneSpec(0, Intrinsics.from_fov(SIZE, SIZE, 70.0), (), lighting, Background("hdri"), 4, "pathtrace")

    reference = raster.render(empty_scene(73.0)).rgb.astype(np.float64)
    same = np.abs(pathtrace.render(empty_scene(73.0)).rgb - reference).mean()
    rotated = np.abs(pathtrace.render(empty_scene(73.0 + 90.0)).rgb - reference).mean()
    assert same < 6.0, f"mean abs difference {same:.1f} levels with the same yaw"
    assert rotated > 3 * same


def test_denoising_lowers_error_against_high_spp_reference(backends):
    _, pathtrace, assets = backends
    scene = lone_target_scene(assets, Intrinsics.from_fov(64, 64, 60.0), spp=4, background=Background("hdri"))
    noisy = pathtrace.render_passes(scene)
    reference = pathtrace.render_passes(dataclasses.replace(scene, spp=512, index=1)).color

    def error(color: np.ndarray) -> float:  # in display values, where noise is seen
        return float(np.mean((tonemap_to_srgb8(color).astype(np.float64) - tonemap_to_srgb8(reference)) ** 2))

    from dope_stream.render.denoise import denoise_hdr

    denoised = denoise_hdr(noisy.color, noisy.albedo, noisy.normal)
    assert error(denoised) < 0.5 * error(noisy.color), (error(denoised), error(noisy.color))


def test_same_scene_renders_identically(backends):
    raster, pathtrace, assets = backends
    scene = lone_target_scene(assets, Intrinsics.from_fov(48, 48, 60.0), spp=2, background=Background("hdri"))
    assert np.array_equal(pathtrace.render(scene).rgb, pathtrace.render(scene).rgb)


def test_llvm_discovery_prefers_newest_usable_version(tmp_path):
    for name in ("libLLVM-15.so.1", "libLLVM.so.19.1", "libLLVM-17.so"):
        (tmp_path / name).write_bytes(b"")
    assert find_llvm_library((str(tmp_path / "libLLVM*"),)) == str(tmp_path / "libLLVM.so.19.1")
    (tmp_path / "libLLVM.so.19.1").unlink()
    (tmp_path / "libLLVM-17.so").unlink()
    assert find_llvm_library((str(tmp_path / "libLLVM*"),)) is None  # LLVM 15 makes drjit abort
    environ = {LLVM_PATH_ENV: "/opt/custom/libLLVM.so"}
    assert point_drjit_at_llvm(environ) == "/opt/custom/libLLVM.so"  # the user's choice wins


def test_thread_count_comes_from_the_environment():
    assert threads_from_environment({}) is None
    assert threads_from_environment({THREADS_ENV: "2"}) == 2
    for bad in ("0", "-1", "two"):
        with pytest.raises(DopeError, match=THREADS_ENV):
            threads_from_environment({THREADS_ENV: bad})


def test_guides_only_when_asked_and_aligned_with_the_object(backends):
    """The guide pass is separate: skipping it (no denoising) leaves the colour film as it was, and
    the guides it gives cover the raster mask."""
    raster, pathtrace, assets = backends
    scene = lone_target_scene(assets, Intrinsics.from_fov(48, 48, 60.0), spp=4, background=Background("hdri"))
    with_guides, without = pathtrace.render_passes(scene, guides=True), pathtrace.render_passes(scene, guides=False)
    assert without.albedo is None and without.normal is None
    assert np.array_equal(with_guides.color, without.color)
    normal_length = np.linalg.norm(with_guides.normal, axis=-1)
    surface = normal_length > 0.5  # empty pixels have zero normals; edge pixels average
    mask = raster.render(scene).instance_id > 0
    assert (surface & mask).sum() / (surface | mask).sum() > 0.9
    assert np.median(normal_length[mask]) > 0.99  # unit normals inside the object
    assert with_guides.albedo[mask].mean() > 0.05 and with_guides.albedo[normal_length == 0].max() == 0.0


def test_mesh_with_texture_and_vertex_colours_is_named_in_a_warning(backends, caplog):
    _, _, assets = backends
    key = next(iter(assets.targets.values()))
    mesh = assets.meshes[key]
    coloured = dataclasses.replace(mesh, vertex_colors=np.full((len(mesh.vertices), 3), 128, np.uint8))
    library = dataclasses.replace(assets, meshes={**assets.meshes, key: coloured})
    with caplog.at_level(logging.WARNING, logger="dope_stream.render.pathtrace"):
        PathTraceRenderer(library).close()
    assert f"{key} have a texture and vertex colours" in caplog.text


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(DopeError, match="variant 'cuda_rgb_typo'"):
        select_variant("cuda_rgb_typo")


def test_missing_llvm_falls_back_to_scalar_with_one_message(tmp_path):
    """drjit cannot load LLVM: one logged message, then the scalar variant still renders."""
    code = textwrap.dedent(
        """
        import logging
        from dope_stream.assets import build_asset_library
        from dope_stream.config import GenerateConfig
        from dope_stream.render import create_renderer
        from dope_stream.scene import sample_scene

        logging.basicConfig(level=logging.WARNING)
        config = GenerateConfig(width=16, height=16, spp=1, nb_objects=1, nb_distractors=1, renderer="pathtrace")
        assets = build_asset_library(config)
        renderer = create_renderer("pathtrace", assets)
        layers = renderer.render(sample_scene(config, assets, 0))
        print("variant", renderer.variant, "rgb", layers.rgb.shape, "ids", int((layers.instance_id > 0).sum()))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != VARIANT_ENV}
    env[LLVM_PATH_ENV] = str(tmp_path / "missing" / "libLLVM.so.19.1")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "variant scalar_rgb rgb (16, 16, 3)" in result.stdout
    assert result.stderr.count("falling back to the scalar_rgb variant") == 1
    assert "apt-get install libllvm19" in result.stderr
