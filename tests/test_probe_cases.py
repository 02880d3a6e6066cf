"""The faults a probe found (issue 14), each as the user met it: exit code 2 and one line naming the
file or option, never a traceback, and no process left running (the kills are tests/test_faults.py)."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from toy_dataset import write_folder

from dope_app.cli import COMMANDS, main
from dope_app.config import DemoConfig
from dope_stream.assets import load_photo
from dope_stream.config import PACKAGE_ASSETS, GenerateConfig, cli_fields
from dope_stream.reader import open_dataset
from infer.config import EvaluateConfig, ExportConfig, InferConfig
from trainer.config import TrainConfig

LEFT_BEHIND_GRACE_S = 10.0  # loader workers exit once the failed epoch's loader is collected


def live_children() -> set[int]:
    """This process's running (non-zombie) child processes."""
    found = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            found.update(int(pid) for pid in (task / "children").read_text().split())
        except OSError:  # thread gone meanwhile
            continue
    return {pid for pid in found if _running(pid)}


def _running(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(autouse=True)
def no_process_left_behind():
    before = live_children()
    yield
    deadline = time.monotonic() + LEFT_BEHIND_GRACE_S
    while (left := live_children() - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes left running: {left}"


TRAIN = ("--image_size", "64", "--epochs", "1", "--batch_size", "2", "--val_fraction", "0", "--net", "light", "--stages", "1")


def one_error_line(capsys, verb: str, *options: str) -> str:
    """Runs `dope VERB OPTIONS`; checks exit code 2 and a single error line; returns it."""
    assert main([verb, *options]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(f"dope {verb}: ")]
    assert len(lines) == 1 and lines[0].startswith(f"dope {verb}: error: "), err
    return lines[0]


def test_bad_annotation_read_by_loader_workers(capsys, tmp_path):
    data = write_folder(tmp_path / "data", 6, size=64)
    (data / "000001.json").write_text('{"objects": [{"class": "toy_box", "projected_cuboid": "nope"}]}')
    line = one_error_line(capsys, "train", "--data", str(data), "--loader_workers", "2", "--out", str(tmp_path / "run"), *TRAIN)
    assert "000001.json: objects[0].projected_cuboid: expected" in line


def _resize_image(data, key: str, width: int, height: int) -> None:
    path = data / f"{key}.png"
    cv2.imwrite(str(path), cv2.resize(cv2.imread(str(path)), (width, height)))


def test_image_size_differs_from_camera_data(capsys, tmp_path):
    data = write_folder(tmp_path / "data", 3, size=128)
    _resize_image(data, "000002", 200, 160)
    expected = "000002: image is 200x160 pixels but the camera_data of"
    line = one_error_line(capsys, "train", "--data", str(data), "--loader_workers", "0", "--out", str(tmp_path / "run"), *TRAIN)
    assert expected in line and "says 128x128" in line
    assert expected in one_error_line(capsys, "view", str(data), "--out", str(tmp_path / "view"))


def test_view_refuses_a_mask_of_another_size(capsys, tmp_path):
    data = write_folder(tmp_path / "data", 1, size=64)
    cv2.imwrite(str(data / "000000.seg.png"), np.zeros((32, 48), np.uint16))
    assert "000000.seg.png: mask is 48x32 pixels, its image 64x64" in one_error_line(capsys, "view", str(data))


VERB_CONFIGS = {"generate": GenerateConfig, "train": TrainConfig, "infer": InferConfig, "evaluate": EvaluateConfig,
                "export": ExportConfig, "demo": DemoConfig}


@pytest.mark.parametrize("verb", sorted(COMMANDS))
def test_help_of_every_verb_shows_every_description(capsys, verb):
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    shown = "".join(capsys.readouterr().out.split())  # argparse re-wraps the lines
    for _, field in cli_fields(VERB_CONFIGS[verb]) if verb in VERB_CONFIGS else ():
        assert "".join(field.description.split()) in shown


@pytest.mark.parametrize("intrinsics", ["0,0,32,32", "-500,500,32,32", "500,nan,32,32"])
def test_focal_lengths_must_be_positive(capsys, tmp_path, intrinsics):
    line = one_error_line(capsys, "generate", f"--intrinsics={intrinsics}", "--out", str(tmp_path / "d"))
    assert "option 'intrinsics': focal lengths fx, fy must be positive" in line
    line = one_error_line(capsys, "infer", "--weights", "w.pt", "--images", str(tmp_path), f"--intrinsics={intrinsics}")
    assert "option 'intrinsics': focal lengths" in line


def test_focal_lengths_of_an_annotation_must_be_positive(capsys, tmp_path):
    data = write_folder(tmp_path / "data", 2, size=64)
    annotation = json.loads((data / "000001.json").read_text())
    annotation["camera_data"]["intrinsics"]["fy"] = 0
    (data / "000001.json").write_text(json.dumps(annotation))
    line = one_error_line(capsys, "train", "--data", str(data), "--loader_workers", "0", "--out", str(tmp_path / "run"), *TRAIN)
    assert "000001.json: camera_data.intrinsics: focal lengths fx, fy must be positive" in line


def test_class_names_count_names_the_option(capsys, tmp_path):
    line = one_error_line(capsys, "generate", "--class_names", "a", "b", "--out", str(tmp_path / "d"))
    assert line == "dope generate: error: options: option 'class_names': 2 names for 1 obj meshes (one name per mesh)"


def _cut_before(shard, member: str) -> None:
    """Truncate `shard` at the tar block where `member` starts, as a partial copy leaves it."""
    with tarfile.open(shard) as tar:
        offset = next(info.offset for info in tar if info.name == member)
    os.truncate(shard, offset)


@pytest.mark.parametrize("cut_member, expected", [
    ("000003.depth.png", "shard-000001.tar: holds 1 of the 2 frames"),
    ("000003.seg.png", "shard-000001.tar: frame 000003 lacks seg.png, which"),
])
def test_a_truncated_shard_is_refused(capsys, tmp_path, generated_shards, cut_member, expected):
    data = shutil.copytree(generated_shards, tmp_path / "data")
    _cut_before(data / "shard-000001.tar", cut_member)
    line = one_error_line(capsys, "train", "--data", str(data), "--loader_workers", "0", "--out", str(tmp_path / "run"), *TRAIN)
    assert expected in line and "manifest.json lists" in line
    (data / "shard-000001.tar").unlink()  # the way out the message offers: train without it
    assert len(open_dataset([data])) == 4


def test_evaluate_refuses_folders_without_a_common_stem(capsys, tmp_path):
    gt = write_folder(tmp_path / "gt", 2, size=64)
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / "photo_a.json").write_text(json.dumps({"objects": []}))
    line = one_error_line(capsys, "evaluate", "--gt", str(gt), "--pred", str(pred))
    assert f"--gt {gt} and --pred {pred} share no file stem (e.g. 000000.json and photo_a.json)" in line
    assert not (pred / "metrics.json").exists()


def test_a_partial_checkpoint_temporary_is_removed_by_the_next_run(capsys, tmp_path):
    data = write_folder(tmp_path / "data", 2, size=64)
    partial = tmp_path / "run" / "checkpoints" / ".step-00000002.tmp.pt"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"PK\x03\x04 cut by a kill")
    assert main(["train", "--data", str(data), "--loader_workers", "0", "--max_steps", "1", "--resume", "--out", str(tmp_path / "run"), *TRAIN]) == 0
    assert not partial.exists() and [p.name for p in partial.parent.iterdir()] == ["step-00000001.pt"]


def test_a_truncated_background_jpeg_is_named_in_a_warning(tmp_path, caplog):
    source = sorted((PACKAGE_ASSETS / "backgrounds").glob("*.jpg"))[0]
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    load_photo(source)
    assert not caplog.records
    assert load_photo(cut).shape == load_photo(source).shape
    assert f"background image {cut} does not end with a JPEG end marker" in caplog.text


def test_obj_given_a_folder(capsys, tmp_path):
    folder = PACKAGE_ASSETS / "objects" / "003_cracker_box"
    line = one_error_line(capsys, "generate", "--obj", str(folder), "--out", str(tmp_path / "d"))
    assert line.endswith(f"mesh {folder} is a folder; give a mesh file (model.obj)")


class NotWeights:
    """Pickled by reference: loading it would import (and could run) code."""


@pytest.mark.parametrize("content, expected", [
    (b"not a torch file", "cannot be read as a PyTorch file (truncated, or another format)"),
    (None, "holds Python objects besides tensors and plain values"),
])
def test_unreadable_weights_files(capsys, tmp_path, content, expected):
    weights = tmp_path / "w.pt"
    if content is None:
        torch.save({"model": NotWeights()}, weights)  # an object weights_only refuses
    else:
        weights.write_bytes(content)
    for verb, options in (("infer", ["--images", str(tmp_path), "--out", str(tmp_path / "o")]), ("export", ["--onnx", str(tmp_path / "m.onnx")])):
        line = one_error_line(capsys, verb, "--weights", str(weights), *options)
        assert f"--weights {weights}: {expected}" in line and "weights_only" not in line


def test_ray_address_with_an_invalid_port(capsys, tmp_path):
    line = one_error_line(capsys, "generate", "--ray", "127.0.0.1:99999", "--out", str(tmp_path / "d"))
    assert line.endswith("ray: '127.0.0.1:99999': port 99999 is not a TCP port (1-65535)")
