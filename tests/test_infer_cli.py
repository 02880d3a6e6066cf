"""`dope infer` end to end on small inputs: outputs per image, video, both backends, official weights,
and one clear error line for each bad input."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dope_app.cli import main
from dope_stream.geometry import Cuboid, Intrinsics
from trainer.checkpoint import save_atomic
from trainer.meta import ModelMeta
from trainer.networks import DopeNetwork, build_network

CAMERA = Intrinsics(120.0, 120.0, 47.5, 31.5, 96, 64)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_network("light", pretrained=False)
    meta = ModelMeta(network="light", class_name="box", cuboid=Cuboid((0.0, 0.0, 0.0), (0.1, 0.2, 0.05)),
                     stages=3, input_size=64)
    path = tmp_path_factory.mktemp("ckpt") / "light.pt"
    save_atomic({"meta": meta.to_dict(), "model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def official_weights(tmp_path_factory) -> Path:
    """A state dict saved the way the official releases are: DataParallel's `module.` key prefix."""
    torch.manual_seed(0)
    state = {f"module.{k}": v for k, v in DopeNetwork().state_dict().items()}
    path = tmp_path_factory.mktemp("official") / "cracker_60.pth"
    torch.save(state, path)
    return path


def _images(folder: Path, count: int = 2, with_camera: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:06d}.png"), rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
        if with_camera:
            (folder / f"{i:06d}.json").write_text(json.dumps({"camera_data": CAMERA.to_json(), "objects": []}))
    return folder


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_infer_writes_json_and_overlay_per_image(checkpoint, tmp_path, backend):
    images = _images(tmp_path / "images")
    out = tmp_path / "out"
    assert main(["infer", "--weights", str(checkpoint), "--images", str(images), "--out", str(out),
                 "--backend", backend]) == 0
    for stem in ("000000", "000001"):
        prediction = json.loads((out / f"{stem}.json").read_text())
        assert prediction["camera_data"]["intrinsics"]["fx"] == CAMERA.fx
        assert isinstance(prediction["objects"], list)
        assert cv2.imread(str(out / f"{stem}.png")).shape == (64, 96, 3)


def test_infer_resumes_by_skipping_finished_images(checkpoint, tmp_path):
    images = _images(tmp_path / "images")
    out = tmp_path / "out"
    out.mkdir()
    (out / "000000.json").write_text('{"marker": true}')
    assert main(["infer", "--weights", str(checkpoint), "--images", str(images), "--out", str(out)]) == 0
    assert json.loads((out / "000000.json").read_text()) == {"marker": True}
    assert (out / "000001.json").is_file()


def test_infer_on_a_video_writes_an_overlaid_video(checkpoint, tmp_path):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    for value in (40, 120, 200):
        writer.write(np.full((64, 96, 3), value, np.uint8))
    writer.release()
    out = tmp_path / "out"
    assert main(["infer", "--weights", str(checkpoint), "--images", str(video), "--out", str(out),
                 "--intrinsics", "120,120,47.5,31.5"]) == 0
    assert sorted(p.name for p in out.glob("clip_*.json")) == ["clip_000000.json", "clip_000001.json", "clip_000002.json"]
    capture = cv2.VideoCapture(str(out / "clip_overlay.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3


def test_official_weights_load_and_run(official_weights, tmp_path):
    images = _images(tmp_path / "images", count=1, with_camera=False)
    out = tmp_path / "out"
    assert main(["infer", "--weights", str(official_weights), "--images", str(images / "000000.png"), "--out", str(out),
                 "--object", "cracker", "--dims", "0.16,0.21,0.07", "--intrinsics", "120,120,47.5,31.5"]) == 0
    assert json.loads((out / "000000.json").read_text())["camera_data"]["width"] == 96


def test_official_weights_need_object_and_intrinsics(official_weights, tmp_path, capsys):
    images = _images(tmp_path / "images", count=1, with_camera=False)
    args = ["infer", "--weights", str(official_weights), "--images", str(images), "--out", str(tmp_path / "out")]
    assert main(args) == 2
    assert "--object" in _error_line(capsys)
    assert main(args + ["--object", "cracker", "--dims", "0.16,0.21,0.07"]) == 2
    assert "intrinsics" in _error_line(capsys)


def test_bad_inputs_are_one_line_errors(checkpoint, tmp_path, capsys):
    images = _images(tmp_path / "images", count=1)
    out = str(tmp_path / "out")
    assert main(["infer", "--weights", str(tmp_path / "missing.pt"), "--images", str(images), "--out", out]) == 2
    assert "missing.pt" in _error_line(capsys)
    assert main(["infer", "--weights", str(checkpoint), "--images", str(images), "--out", out, "--object", "mug"]) == 2
    assert "mug" in _error_line(capsys)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "frame.png").write_bytes(b"not an image")
    assert main(["infer", "--weights", str(checkpoint), "--images", str(broken), "--out", out,
                 "--intrinsics", "1,1,1,1"]) == 2
    assert "frame.png" in _error_line(capsys)
    assert main(["infer", "--weights", str(checkpoint), "--images", str(tmp_path / "nowhere"), "--out", out]) == 2
    assert "nowhere" in _error_line(capsys)
    assert main(["infer", "--weights", str(checkpoint), "--images", str(images), "--out", out, "--dims", "16,21,7"]) == 2
    assert "metres" in _error_line(capsys)


def test_camera_yaml_is_scaled_to_the_image_size(checkpoint, tmp_path):
    images = _images(tmp_path / "images", count=1, with_camera=False)
    camera = tmp_path / "camera.yaml"
    # ROS camera_info of the same camera at twice the resolution.
    camera.write_text("image_width: 192\nimage_height: 128\ncamera_matrix:\n  rows: 3\n  cols: 3\n"
                      "  data: [240.0, 0.0, 95.5, 0.0, 240.0, 63.5, 0.0, 0.0, 1.0]\n")
    out = tmp_path / "out"
    assert main(["infer", "--weights", str(checkpoint), "--images", str(images), "--out", str(out),
                 "--camera", str(camera)]) == 0
    intrinsics = json.loads((out / "000000.json").read_text())["camera_data"]["intrinsics"]
    assert intrinsics == pytest.approx({"fx": 120.0, "fy": 120.0, "cx": 47.5, "cy": 31.5})


def test_infer_decoding_defaults_are_the_decoders_own():
    """`dope infer` repeats the decoder's defaults as options (importing trainer.decode into the
    option tree would load scipy at every CLI start): they must not drift apart."""
    from infer.config import InferConfig
    from trainer.decode import DecodeSettings

    decoder = DecodeSettings()
    for name in ("peak_threshold", "centroid_threshold", "subpixel", "snap_radius"):
        assert InferConfig.model_fields[name].default == getattr(decoder, name), name
