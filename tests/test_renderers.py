"""Every registered renderer honours the `Renderer` protocol; the registry is the only list of names.

Driven by `dope_stream.render.BACKENDS`: a newly registered backend is tested here without editing
this file. A backend that cannot be created here must say why in one DopeError.
"""

from __future__ import annotations

import importlib.util
import typing

import numpy as np
import pytest

from conftest import tiny_generate_config
from dope_stream.assets import build_asset_library
from dope_stream.config import DEFAULT_SPP, GenerateConfig
from dope_stream.errors import DopeError
from dope_stream.render import BACKENDS, DEFAULT_RENDERER, RenderOptions, create_renderer, renderer_names
from dope_stream.scene import SceneSpec, renderer_names as scene_renderer_names, sample_scene
from dope_stream.synth import FrameSynthesizer

SIZE = 48
NEEDS = {"pathtrace": "mitsuba"}  # optional dependencies of backends (pip extras)


def available(name: str) -> bool:
    """Whether this environment can create `name`: its members' optional dependencies are installed."""
    members = BACKENDS[name].members(RenderOptions())
    return all(NEEDS.get(member) is None or importlib.util.find_spec(NEEDS[member]) for member in members)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return build_asset_library(tiny_generate_config(tmp_path_factory.mktemp("renderers")))


@pytest.mark.parametrize("name", renderer_names())
def test_backend_renders_layers_that_agree_with_the_scene(name, assets, tmp_path):
    config = tiny_generate_config(tmp_path, width=SIZE, height=SIZE, renderer=name, nb_objects=(2, 2), nb_distractors=(1, 1))
    if not available(name):
        pytest.skip(f"{name} needs {NEEDS}")
    try:
        renderer = create_renderer(name, assets, config.render_options())
    except DopeError as err:  # a registered name that cannot work here says so, with the alternatives
        assert name in str(err) and "--renderer raster" in str(err)
        return
    try:
        for index in range(2):
            scene = sample_scene(config, assets, index)
            layers = renderer.render(scene)
            assert layers.rgb.shape == (SIZE, SIZE, 3) and layers.rgb.dtype == np.uint8
            assert layers.instance_id.shape == (SIZE, SIZE) and layers.instance_id.dtype == np.uint16
            assert layers.depth.shape == (SIZE, SIZE) and layers.depth.dtype == np.float32
            ids = {int(i) for i in np.unique(layers.instance_id)} - {0}
            assert ids <= {instance.segmentation_id for instance in scene.instances}
            covered = layers.instance_id > 0
            assert np.all(layers.depth[covered] > 0) and np.all(layers.depth[~covered] == 0)
            assert set(layers.full_pixel_counts) == {target.segmentation_id for target in scene.targets}
            for target in scene.targets:  # occlusion only hides pixels
                assert layers.full_pixel_counts[target.segmentation_id] >= int((layers.instance_id == target.segmentation_id).sum())
    finally:
        renderer.close()


def test_config_choices_default_spp_and_scene_defaults_come_from_the_registry():
    choices = typing.get_args(GenerateConfig.model_fields["renderer"].annotation)
    assert choices == renderer_names() == tuple(BACKENDS)
    assert DEFAULT_SPP == {name: b.default_spp for name, b in BACKENDS.items() if b.default_spp is not None}
    assert GenerateConfig().renderer == DEFAULT_RENDERER == SceneSpec.__dataclass_fields__["renderer"].default
    assert SceneSpec.__dataclass_fields__["spp"].default == BACKENDS[DEFAULT_RENDERER].default_spp
    for name in renderer_names():
        members = scene_renderer_names(GenerateConfig(renderer=name))
        assert set(members) <= set(BACKENDS) and all(BACKENDS[m].shares is None for m in members)
    with pytest.raises(DopeError, match="unknown renderer 'blender'.*raster"):
        create_renderer("blender", None)


def test_composite_draws_frames_with_its_members_by_share():
    mix = BACKENDS["mix"]
    draws = np.random.default_rng(0).random(2000)
    for fraction in (0.0, 0.3, 1.0):
        options = RenderOptions(mix_fraction=fraction)
        chosen = [mix.frame_renderer(options, draw) for draw in draws]
        assert abs(chosen.count("pathtrace") / len(draws) - fraction) < 0.03
        assert set(chosen) == set(mix.members(options))


@pytest.mark.skipif(not available("mix"), reason="mix needs Mitsuba for its pathtrace frames")
def test_mix_shares_one_raster_context_and_gives_each_members_frames(tmp_path):
    values = dict(width=SIZE, height=SIZE, nb_frames=3, mix_fraction=0.5, spp=2)
    mixed = FrameSynthesizer(tiny_generate_config(tmp_path, renderer="mix", **values))
    raster = FrameSynthesizer(tiny_generate_config(tmp_path, renderer="raster", **values))
    try:
        members = mixed.renderer.members
        assert members["pathtrace"]._raster is members["raster"]  # one EGL context, one upload of the assets
        drawn_by = [sample_scene(mixed.config, mixed.assets, i).renderer for i in range(3)]
        assert set(drawn_by) == {"raster", "pathtrace"}
        for index, name in enumerate(drawn_by):
            sample, alone = mixed.render(index), raster.render(index)
            assert sample.members["json"] == alone.members["json"]  # annotations never depend on the backend
            if name == "raster":
                assert sample.members == alone.members
    finally:
        mixed.close()
        raster.close()
