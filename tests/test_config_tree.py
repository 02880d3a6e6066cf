"""The configuration tree: YAML round trip, "did you mean" on nested keys, deprecated keys, the
commented default file, and environment variables read only at the edge."""

from __future__ import annotations

import logging

import pytest
import yaml

from dope_app.cli import COMMANDS, main
from dope_app.config import DemoConfig, DopeConfig, default_tree_yaml
from dope_stream.config import GenerateConfig
from dope_stream.errors import DopeError
from infer.config import InferConfig
from trainer.config import TrainConfig


def a_tree(tmp_path) -> DopeConfig:
    stream = GenerateConfig(nb_frames=40, nb_objects=(2, 4), seed=5, pathtrace={"threads": 2}, out=tmp_path / "frames")
    return DopeConfig(
        generate=GenerateConfig(nb_distractors=3, render_workers=2, renderer="mix", backgrounds=None),
        train=TrainConfig(stream=stream, epochs=7, loader_workers=0, scale_range=(0.9, 1.1)),
        infer=InferConfig(weights=tmp_path / "w.pth", images=tmp_path / "images", intrinsics=(600, 600, 320, 240)),
        demo=DemoConfig(size=128, render_workers=1),
    )


def test_yaml_tree_yaml_round_trip(tmp_path):
    tree = a_tree(tmp_path)
    text = tree.to_yaml()
    path = tmp_path / "tree.yaml"
    path.write_text(text)
    loaded = DopeConfig.load(path)
    assert loaded == tree and loaded.to_yaml() == text
    assert loaded.train.stream.pathtrace.threads == 2 and loaded.train.stream.nb_objects == (2, 4)
    # The commented form holds the same values.
    assert DopeConfig.validated(yaml.safe_load(tree.to_commented_yaml())) == tree


def test_each_command_reads_its_section_of_a_tree_file(tmp_path, capsys):
    path = tmp_path / "tree.yaml"
    path.write_text(a_tree(tmp_path).to_yaml())
    assert GenerateConfig.load(path).nb_distractors == (3, 3)
    assert TrainConfig.load(path, {"epochs": 9}).epochs == 9
    assert main(["train", "--config", str(path), "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["epochs"] == 7 and printed["stream"]["nb_frames"] == 40


@pytest.mark.parametrize(
    "values, message",
    [
        ({"train": {"stream": {"nb_frame": 3}}}, "unknown key 'train.stream.nb_frame' (did you mean 'nb_frames'?)"),
        ({"generate": {"pathtrace": {"thread": 3}}}, "unknown key 'generate.pathtrace.thread' (did you mean 'threads'?)"),
        ({"genrate": {}}, "unknown key 'genrate' (did you mean 'generate'?)"),
        ({"train": {"stream": {"nb_frames": 0}}}, "option 'train.stream.nb_frames'"),
    ],
)
def test_nested_keys_are_named_by_their_path(values, message):
    with pytest.raises(DopeError) as caught:
        DopeConfig.validated(values, source="tree.yaml")
    assert str(caught.value).startswith("tree.yaml: ") and message in str(caught.value)


def test_old_keys_still_work_with_a_deprecation_message(tmp_path, caplog):
    stream_file = tmp_path / "stream.yaml"
    stream_file.write_text(GenerateConfig(nb_frames=8, seed=4).to_yaml())
    with caplog.at_level(logging.WARNING):
        generate = GenerateConfig.load(overrides={"workers": 3})
        train = TrainConfig(workers=0, stream=stream_file)
        demo = DemoConfig(workers=1)
        copied = generate.model_copy(update={"workers": 2})  # library code that updates a config
    assert generate.render_workers == 3 and train.loader_workers == 0 and demo.render_workers == 1
    assert copied.render_workers == 2 and "workers" not in copied.__dict__
    assert train.stream == GenerateConfig(nb_frames=8, seed=4)  # the file's settings, nested
    assert "'workers' is deprecated: it is now 'render_workers'" in caplog.text
    assert "'workers' is deprecated: it is now 'loader_workers'" in caplog.text
    with pytest.raises(DopeError, match="'workers' and 'render_workers' are the same setting"):
        GenerateConfig.load(overrides={"workers": 3, "render_workers": 2})
    with pytest.raises(DopeError, match="does not exist"):
        TrainConfig(stream=tmp_path / "missing.yaml")


def test_old_flags_still_work_on_the_command_line(tmp_path, capsys):
    stream_file = tmp_path / "stream.yaml"
    stream_file.write_text("nb_frames: 5\n")
    assert main(["generate", "--workers", "2", "--nb-frames", "3", "--pathtrace.threads", "1", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert (printed["render_workers"], printed["nb_frames"], printed["pathtrace"]["threads"]) == (2, 3, 1)
    assert main(["train", "--stream", str(stream_file), "--workers", "1", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["stream"]["nb_frames"] == 5 and printed["loader_workers"] == 1


def test_dope_config_prints_a_commented_default_file_that_loads_back(capsys, tmp_path):
    assert main(["config"]) == 0
    text = capsys.readouterr().out
    assert text == default_tree_yaml()
    assert "# target instances per frame: N or a range a,b\n  nb_objects: [1, 3]" in text
    assert "# infer:\n#   # checkpoint (.pth)" in text  # a section with required keys, to fill in
    assert DopeConfig.validated(yaml.safe_load(text)) == DopeConfig()
    assert main(["config", "train"]) == 0
    assert TrainConfig.validated(yaml.safe_load(capsys.readouterr().out)) == TrainConfig()
    assert main(["config", "infer"]) == 0
    assert "# weights:   (required)" in capsys.readouterr().out


def test_backend_environment_is_read_by_the_cli_not_the_library(monkeypatch, capsys):
    monkeypatch.setenv("DOPE_PATHTRACE_THREADS", "3")
    monkeypatch.setenv("DOPE_MITSUBA_VARIANT", "scalar_rgb")
    assert GenerateConfig().pathtrace.threads is None  # the library ignores the environment
    assert main(["generate", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["pathtrace"] == {"variant": "scalar_rgb", "threads": 3}
    assert main(["generate", "--pathtrace.threads", "1", "--print-config"]) == 0  # the config wins
    assert yaml.safe_load(capsys.readouterr().out)["pathtrace"]["threads"] == 1
    monkeypatch.setenv("DOPE_PATHTRACE_THREADS", "two")
    assert main(["generate", "--print-config"]) == 2
    assert "DOPE_PATHTRACE_THREADS='two'" in capsys.readouterr().err


@pytest.mark.parametrize("verb", sorted(COMMANDS))
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as caught:
        main([verb, "--help"])
    assert caught.value.code == 0 and f"dope {verb}" in capsys.readouterr().out
