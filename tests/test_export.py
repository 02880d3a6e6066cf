"""ONNX export: the Isaac ROS layout, outputs equal to torch, metadata that onnxruntime inference uses."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from dope_app.cli import main
from dope_stream.geometry import Cuboid
from infer.export import export_onnx, max_abs_difference
from infer.loading import OnnxBackend
from trainer.checkpoint import save_atomic
from trainer.meta import ModelMeta
from trainer.networks import build_network

CUBOID = Cuboid((0.0, 0.01, 0.0), (0.16, 0.21, 0.07))


@pytest.fixture(scope="module")
def light_model():
    torch.manual_seed(0)
    return build_network("light", pretrained=False).eval()


@pytest.mark.parametrize("dynamic", [False, True])
def test_export_matches_torch(light_model, tmp_path, dynamic):
    info = ModelMeta("light", "box", CUBOID, 3, 64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
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


def _save_checkpoint(model, path):
    meta = ModelMeta(network="light", class_name="box", cuboid=CUBOID, stages=3, input_size=64)
    save_atomic({"meta": meta.to_dict(), "model": model.state_dict()}, path)


def test_dope_export_cli_prints_the_difference(light_model, tmp_path, capsys):
    _save_checkpoint(light_model, tmp_path / "ckpt.pt")
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


@pytest.fixture(scope="module")
def calibration_folder(tmp_path_factory):
    """A few photos-like images: smooth random colour fields (plus DOPE layer files, which are skipped)."""
    import cv2

    folder = tmp_path_factory.mktemp("calibration")
    rng = np.random.default_rng(0)
    for index in range(6):
        image = cv2.resize(rng.integers(0, 256, (8, 12, 3), dtype=np.uint8), (96, 64), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f"{index:06d}.jpg"), image)
    cv2.imwrite(str(folder / "000000.seg.png"), np.zeros((64, 96), np.uint8))
    return folder


def test_int8_export_stays_close_to_fp32(light_model, calibration_folder, tmp_path):
    from infer.export import calibration_batches, quantize_int8

    info = ModelMeta("light", "box", CUBOID, 3, 64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    fp32 = export_onnx(light_model, info, tmp_path / "m.onnx", width=96, height=64)
    batches = calibration_batches(calibration_folder, info, 96, 64)
    assert len(batches) == 6 and batches[0].shape == (1, 3, 64, 96)
    int8 = quantize_int8(fp32, tmp_path / "m.int8.onnx", batches)
    quantized, reference = OnnxBackend(int8), OnnxBackend(fp32)
    assert quantized.info == info  # the metadata survives quantisation
    assert any(node.op_type == "QuantizeLinear" for node in onnx.load(str(int8)).graph.node)
    for batch in batches[:2]:
        expected = np.concatenate(reference(batch))
        got = np.concatenate(quantized(batch))
        assert np.corrcoef(expected.ravel(), got.ravel())[0, 1] > 0.98
        assert np.abs(got - expected).mean() < 0.1 * expected.std()


def test_int8_export_cli_needs_calibration_images(light_model, calibration_folder, tmp_path, capsys):
    _save_checkpoint(light_model, tmp_path / "ckpt.pt")
    common = ["export", "--weights", str(tmp_path / "ckpt.pt"), "--onnx", str(tmp_path / "m.onnx"), "--height", "64", "--width", "96", "--int8"]
    assert main(common) == 2
    assert "option 'calibration'" in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()
    assert main(common + ["--calibration", str(tmp_path / "nothing")]) == 2
    assert "--calibration" in capsys.readouterr().err
    assert main(common + ["--calibration", str(calibration_folder)]) == 0
    assert "int8:" in capsys.readouterr().out and (tmp_path / "m.int8.onnx").is_file()
