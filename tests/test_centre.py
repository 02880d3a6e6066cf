"""The `centre` network: corner offsets regressed at the centroid, their targets, decoder, training and export."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from dope_stream.config import GenerateConfig
from dope_stream.generate import generate
from dope_stream.geometry import map_to_pixel, pixel_to_map
from dope_stream.reader import open_dataset
from trainer.checkpoint import load_model
from trainer.decode import DecodeSettings, decode_offsets
from trainer.config import TrainConfig
from trainer.loop import train
from trainer.meta import OFFSET_SCALE, STRIDE
from trainer.networks import build_network
from trainer.targets import belief_maps, centre_offset_maps

KEYPOINTS = np.array([[[70, 30], [40, 34], [44, 90], [74, 86], [66, 38], [38, 40], [42, 96], [70, 92], [56, 62]]], float)


def test_offset_targets_point_from_each_cell_near_the_centroid_to_the_corners():
    offsets, weight = centre_offset_maps(KEYPOINTS, (16, 16), STRIDE, radius=2.0, scale=OFFSET_SCALE)
    centre = pixel_to_map(KEYPOINTS[0, 8], STRIDE)
    rows, cols = np.nonzero(weight[0])
    assert len(rows) > 4 and np.all(np.hypot(cols - centre[0], rows - centre[1]) <= 2.0)
    for row, col in zip(rows, cols):
        corners = np.array([col, row]) + OFFSET_SCALE * offsets[:, row, col].reshape(8, 2)
        assert np.allclose(map_to_pixel(corners, STRIDE), KEYPOINTS[0, :8], atol=1e-3)
    assert not offsets[:, weight[0] == 0].any()


def test_decoder_takes_corner_identities_from_the_offsets():
    belief = belief_maps(KEYPOINTS, (16, 16), STRIDE, sigma=1.0)
    offsets, _ = centre_offset_maps(KEYPOINTS, (16, 16), STRIDE, radius=2.0, scale=OFFSET_SCALE)
    settings = DecodeSettings()
    (found,) = decode_offsets(belief, offsets, STRIDE, settings, OFFSET_SCALE)
    assert np.abs(found.uv - KEYPOINTS[0]).max() < 0.3  # snapped to the sub-pixel belief peaks
    swapped = belief.copy()
    swapped[[0, 2]] = swapped[[2, 0]]  # corner maps that confuse two corners...
    (found,) = decode_offsets(swapped, offsets, STRIDE, settings, OFFSET_SCALE)
    assert np.abs(found.uv - KEYPOINTS[0]).max() < 1.0  # ...do not move them: the offsets say which is which


@pytest.fixture(scope="module")
def tabletop_frames(tmp_path_factory):
    config = GenerateConfig(
        scene="tabletop", nb_frames=8, width=128, height=128, out=tmp_path_factory.mktemp("tabletop"), nb_objects=(1, 1),
        nb_distractors=(0, 2), camera_distance=(0.55, 0.7), elevation=(15, 50), views_per_scene=1, frames_per_shard=4,
        distractors=None,
    )
    return generate(config)


def _corner_errors(model, meta, dataset, decoded: bool) -> tuple[float, float]:
    """Median pixel error of the corners and the share of corners nearer another true corner than their
    own: the corners regressed at the true centroid (`decoded` False) or found by the full decoder."""
    errors, wrong = [], []
    mean, std = torch.tensor(meta.mean).view(1, 3, 1, 1), torch.tensor(meta.std).view(1, 3, 1, 1)
    for index in range(len(dataset)):
        frame = dataset.frame(index)
        truth = max(frame.objects, key=lambda o: o.visibility).projected_cuboid
        x = (torch.from_numpy(frame.image).permute(2, 0, 1)[None].float() / 255 - mean) / std
        with torch.no_grad():
            stages, offsets = model.eval()(x, offsets=True)
        belief, offsets = stages[-1][0][0].numpy(), offsets[0].numpy()
        if decoded:
            found = decode_offsets(belief, offsets, STRIDE, DecodeSettings(), OFFSET_SCALE)
            uv = min(found, key=lambda o: np.linalg.norm(o.uv[8] - truth[8])).uv[:8] if found else np.full((8, 2), np.inf)
        else:
            centre = np.rint(pixel_to_map(truth[8], STRIDE)).astype(int).clip(0, np.array(offsets.shape[:0:-1]) - 1)
            uv = map_to_pixel(centre + OFFSET_SCALE * offsets[:, centre[1], centre[0]].reshape(8, 2), STRIDE)
        distance = np.linalg.norm(uv[:, None] - truth[None, :8], axis=-1)  # (found corner, true corner)
        errors.append(float(np.median(np.diag(distance))))
        wrong.append(float(np.mean(distance.argmin(axis=1) != np.arange(8))))
    return float(np.median(errors)), float(np.mean(wrong))


def test_centre_network_learns_corners_and_their_identities(tabletop_frames, tmp_path):
    config = TrainConfig(data=[tabletop_frames], val_data=[tabletop_frames], net="centre", batch_size=8, lr=3e-3,
                         image_size=128, out=tmp_path, workers=0, augment=False, warmup_steps=5, amp=False,
                         save_every=1000, val_every=1000, epochs=160)
    dataset = open_dataset([tabletop_frames])
    torch.manual_seed(config.seed)  # the initialisation train() starts from
    untrained = build_network("centre", pretrained=True)
    summary = train(config)
    model, meta = load_model(tmp_path)
    before, after = _corner_errors(untrained, meta, dataset, False), _corner_errors(model, meta, dataset, False)
    assert summary.steps == 160
    assert after[0] < before[0] / 4 and after[0] < 4.0, (before, after)  # pixels
    assert after[1] < max(before[1] / 4, 0.05), (before, after)  # corners taken for another corner
    decoded = _corner_errors(model, meta, dataset, True)
    assert decoded[0] < 4.0 and decoded[1] < 0.05, decoded  # the deployed decoder finds them too


def test_centre_checkpoint_exports_offsets_and_detects_the_same(tabletop_frames, tmp_path):
    from infer.detector import Detector, TorchBackend
    from infer.export import export_onnx, max_abs_difference
    from infer.loading import OnnxBackend, with_cuboid
    from infer.config import InferConfig

    config = TrainConfig(data=[tabletop_frames], net="centre", batch_size=4, image_size=128, out=tmp_path / "run",
                         workers=0, augment=False, amp=False, epochs=1, max_steps=2, val_fraction=0)
    train(config)
    model, meta = load_model(tmp_path / "run")
    info = with_cuboid(meta, InferConfig(weights=tmp_path / "run", images=tabletop_frames))
    assert info.offset_scale == OFFSET_SCALE and meta.outputs["offsets"] == 16
    path = export_onnx(model, info, tmp_path / "centre.onnx", width=128, height=96)
    assert max_abs_difference(model, path, 128, 96) < 1e-3
    onnx_maps = OnnxBackend(path)(np.zeros((1, 3, 96, 128), np.float32))
    torch_maps = TorchBackend(model, offsets=True)(np.zeros((1, 3, 96, 128), np.float32))
    assert len(onnx_maps) == len(torch_maps) == 3 and all(np.allclose(a, b, atol=1e-3) for a, b in zip(onnx_maps, torch_maps))
    image = open_dataset([tabletop_frames]).frame(0).image
    torch_detector, onnx_detector = Detector(TorchBackend(model, offsets=True), info), Detector(OnnxBackend(path), info)
    assert len(torch_detector.keypoints(image)) == len(onnx_detector.keypoints(image[:, :, :]))


def _load_benchmark(name: str):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_real_scores_photos_with_ground_truth_beside_them(tabletop_frames, tmp_path, capsys):
    bench_real = _load_benchmark("bench_real")
    photos = generate(GenerateConfig(
        scene="tabletop", nb_frames=3, width=128, height=96, out=tmp_path / "photos", layout="folder", nb_objects=(1, 1),
        nb_distractors=(0, 1), camera_distance=(0.5, 0.6), distractors=None, cameras=["ycbv"],
    ))
    train(TrainConfig(data=[tabletop_frames], net="centre", batch_size=4, image_size=128, out=tmp_path / "run",
                      workers=0, amp=False, epochs=1, max_steps=1, val_fraction=0))
    assert bench_real.main(["--weights", str(tmp_path / "run"), "--images", str(photos), "--out", str(tmp_path / "bench")]) == 0
    printed = capsys.readouterr().out
    assert "003_cracker_box: found" in printed and "of 3" in printed and "AUC" in printed
    assert (tmp_path / "bench" / "metrics.json").is_file() and (tmp_path / "bench" / "overlays.jpg").is_file()
    assert len(list((tmp_path / "bench" / "predictions").glob("*.json"))) == 3
