"""Every verb checks its output location first: one line naming the option, exit code 2."""

from __future__ import annotations

import errno

import pytest
from toy_dataset import write_folder

from dope_stream import outputs
from dope_app.cli import main


def _verbs(tmp_path, out):
    data = write_folder(tmp_path / "data", 1, size=64)
    return {
        "generate": (["--nb_frames", "1", "--width", "32", "--height", "32", "--out", str(out)], "--out"),
        "view": ([str(data), "--out", str(out)], "--out"),
        "train": (["--data", str(data), "--out", str(out)], "--out"),
        "infer": (["--weights", str(tmp_path / "w.pt"), "--images", str(data), "--out", str(out)], "--out"),
        "evaluate": (["--pred", str(data), "--gt", str(data), "--out", str(out)], "--out"),
        "export": (["--weights", str(tmp_path / "w.pt"), "--onnx", str(out / "model.onnx")], "--onnx"),
        "demo": (["--out", str(out)], "--out"),
    }


def _one_line_error(capsys, verb, options) -> str:
    assert main([verb, *options]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "\n" not in err, err
    return err


@pytest.mark.parametrize("verb", ["generate", "view", "train", "infer", "evaluate", "export", "demo"])
def test_an_output_path_under_a_file(tmp_path, capsys, verb):
    (tmp_path / "file").write_text("not a folder")
    options, option = _verbs(tmp_path, tmp_path / "file" / "out")[verb]
    err = _one_line_error(capsys, verb, options)
    assert f"{option} {tmp_path / 'file' / 'out'}" in err and f"{tmp_path / 'file'} is a file, not a folder" in err


@pytest.mark.parametrize("verb", ["view", "train", "infer", "evaluate", "export"])
def test_a_read_only_file_system(tmp_path, capsys, monkeypatch, verb):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(outputs.tempfile, "TemporaryFile", read_only)
    options, option = _verbs(tmp_path, tmp_path / "out")[verb]
    assert "cannot write there (read-only file system)" in _one_line_error(capsys, verb, options)


def test_an_onnx_path_that_is_a_folder(tmp_path, capsys):
    err = _one_line_error(capsys, "export", ["--weights", str(tmp_path / "w.pt"), "--onnx", str(tmp_path)])
    assert f"--onnx {tmp_path}: is a folder; give a file name" in err
