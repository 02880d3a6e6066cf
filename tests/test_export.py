"""ONNX export: the Isaac ROS layout, outputs equal to torch, metadata that onnxruntime inference uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dope_stream.cli import main
from dope_stream.geometry import Cuboid
from infer.detector import NetworkInfo
from infer.export import export_onnx, max_abs_difference
from infer.loading import OnnxBackend
from trainer.checkpoint import ModelMeta, save_atomic
from trainer.networks import build_network

CUBOID = Cuboid((0.0, 0.01, 0.0), (0.16, 0.21, 0.07))


@pytest.fixture(scope="module")
def light_model():
    torch.manual_seed(0)
    return build_network("light", pretrained=False).eval()


@pytest.mark.parametrize("dynamic", [False, True])
def test_export_matches_torch(light_model, tmp_path, dynamic):
    info = NetworkInfo("light", "box", CUBOID, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    path = export_onnx(light_model, info, tmp_path / "m.onnx", width=96, height=64, dynamic=dynamic)
    backend = OnnxBackend(path)
    assert backend.info == info
    assert backend.fixed_size == (None if dynamic else (96, 64))
    session_input, session_output = backend.session.get_inputs()[0], backend.session.get_outputs()[0]
    assert (session_input.name, session_output.name) == ("input", "output")
    assert max_abs_difference(light_model, path, 96, 64) < 1e-4
    if dynamic:  # another size runs too, still equal to torch
        assert max_abs_difference(light_model, path, 136, 88, seed=1) < 1e-4
        belief, affinity = backend(np.zeros((1, 3, 88, 136), np.float32))
        assert belief.shape == (9, 11, 17) and affinity.shape == (16, 11, 17)


def test_dope_export_cli_prints_the_difference(light_model, tmp_path, capsys):
    meta = ModelMeta(network="light", class_name="box", cuboid=CUBOID, stages=3, input_size=64)
    save_atomic({"meta": meta.to_dict(), "model": light_model.state_dict()}, tmp_path / "ckpt.pt")
    code = main(["export", "--weights", str(tmp_path / "ckpt.pt"), "--onnx", str(tmp_path / "out.onnx"),
                 "--height", "64", "--width", "96"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "max |torch - onnxruntime|" in printed
    assert float(printed.rsplit("=", 1)[1]) < 1e-4
    assert OnnxBackend(tmp_path / "out.onnx").info.class_name == "box"


def test_export_size_must_be_a_multiple_of_8(tmp_path, capsys):
    code = main(["export", "--weights", str(tmp_path / "x.pt"), "--onnx", str(tmp_path / "o.onnx"), "--height", "100"])
    assert code == 2
    assert "height" in capsys.readouterr().err
