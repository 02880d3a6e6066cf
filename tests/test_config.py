"""Config: YAML < command line precedence, ranges, and errors that name the key."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from dope_stream.config import GenerateConfig, add_config_arguments, config_from_args, read_yaml
from dope_stream.errors import DopeError


def _parse(argv: list[str]) -> GenerateConfig:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, GenerateConfig)
    return config_from_args(GenerateConfig, parser.parse_args(argv))


def test_yaml_then_command_line(tmp_path):
    config_file = tmp_path / "gen.yaml"
    config_file.write_text("nb_frames: 7\nnb_objects: 2,5\nwidth: 320\nbackgrounds: null\n")
    config = _parse(["--config", str(config_file), "--width", "100", "--nb-distractors", "3"])
    assert (config.nb_frames, config.nb_objects, config.width, config.nb_distractors) == (7, (2, 5), 100, (3, 3))
    assert config.backgrounds is None and config.height == 512
    assert _parse(["--distractors", "none"]).distractors is None
    assert _parse(["--no-denoise"]).denoise is False


@pytest.mark.parametrize(
    "values, message",
    [
        ({"nb_objects": "5,2"}, "nb_objects"),
        ({"nb_distractors": -1}, "nb_distractors"),
        ({"nb_objects": "a,b"}, "nb_objects"),
        ({"width": 0}, "width"),
        ({"renderer": "blender"}, "renderer"),
        ({"nb_frame": 10}, "did you mean 'nb_frames'"),
        ({"class_names": "a,b"}, "option 'class_names': 2 names for 1 obj"),
        ({"intrinsics": "1,2,3"}, "intrinsics"),
    ],
)
def test_bad_values_name_the_option(values, message):
    with pytest.raises(DopeError, match=message):
        GenerateConfig.load(overrides=values)


def test_bad_yaml_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(DopeError, match="mapping"):
        GenerateConfig.load(bad)
    with pytest.raises(DopeError, match="does not exist"):
        GenerateConfig.load(tmp_path / "missing.yaml")


def test_yaml_round_trip(tmp_path):
    config = GenerateConfig(nb_objects=(2, 3), seed=9, backgrounds=None)
    path = tmp_path / "round.yaml"
    path.write_text(config.to_yaml())
    assert GenerateConfig.load(path) == config


def test_list_options_take_spaces_commas_or_none():
    assert _parse(["--cameras", "ycbv,primesense", "realsense_d435"]).cameras == ["ycbv", "primesense", "realsense_d435"]
    assert _parse(["--cameras", "none"]).cameras is None
    from infer.config import InferConfig

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, InferConfig)
    infer = lambda *argv: config_from_args(InferConfig, parser.parse_args(["--weights", "w.pth", "--images", "x", *argv]))
    assert infer().pyramid == [2.0, 1.0, 0.5]
    assert infer("--pyramid", "2,1", "0.5").pyramid == [2.0, 1.0, 0.5]
    assert infer("--pyramid", "none").pyramid is None
    with pytest.raises(DopeError, match="pyramid"):
        infer("--pyramid", "0,1")


RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
RECIPES = sorted(RECIPES_DIR.glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.name for p in RECIPES])
def test_shipped_recipes_load_as_a_stream(recipe, monkeypatch):
    """The README's recipes are `dope train --stream FILE` configs: each loads, and its meshes exist
    relative to the checkout, where the README runs them."""
    monkeypatch.chdir(recipe.parents[1])
    config = GenerateConfig.load(recipe)
    assert config.scene == "tabletop" and config.obj
    assert all(Path(mesh).is_file() for mesh in config.obj), config.obj


def test_mix_recipe_is_the_bottle_recipe_with_path_traced_frames():
    """The README compares the two as one recipe with and without path-traced frames: nothing else differs."""
    base, mix = (read_yaml(RECIPES_DIR / name) for name in ("mustard_tabletop.yaml", "mustard_tabletop_mix.yaml"))
    assert (mix.pop("renderer"), mix.pop("mix_fraction")) == ("mix", 0.125)
    assert {k: v for k, v in mix.items() if k != "out"} == {k: v for k, v in base.items() if k != "out"}
