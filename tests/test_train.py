"""Training: the light network learns, resume is exact, checkpoints describe themselves, bad input is one error."""

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from toy_dataset import write_folder

from dope_stream.assets import target_cuboids
from dope_app.cli import main
from dope_stream.config import GenerateConfig
from dope_stream.generate import generate
from dope_stream.reader import open_dataset
from dope_stream.stream.session import disconnect
from trainer.checkpoint import list_checkpoints, load_model, read_checkpoint
from trainer.config import TrainConfig
from trainer.decode import DecodeSettings, decode
from trainer.loop import autocast_dtype, choose_threads, train
from trainer.streaming import busy_renderer_cpus

CLASS = "003_cracker_box"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """8 frames of the built-in cracker box, rendered by `dope generate` (shards + manifest)."""
    out = tmp_path_factory.mktemp("rendered")
    config = GenerateConfig(
        scene="flying", nb_frames=8, width=128, height=128, out=out, nb_objects=(1, 1), nb_distractors=(0, 1), depth_range=(0.4, 0.6),
        frames_per_shard=4,
    )
    return generate(config)


def test_light_overfits_rendered_frames(rendered, tmp_path):
    config = TrainConfig(
        data=[rendered], val_data=[rendered], net="light", epochs=45, batch_size=8, lr=3e-3, image_size=128,
        out=tmp_path, workers=0, augment=False, warmup_steps=5, amp=False, val_every=15, save_every=1000,
    )
    summary = train(config)
    assert summary.steps == 45
    first, last = summary.losses[0], np.mean(summary.losses[-5:])
    assert last < first / 10, (first, last)
    # Validation decodes like `dope infer`: after 15 steps it finds few or no keypoints (their error is
    # then NaN), after 45 it finds most of them within a few pixels.
    errors = [v["keypoint_error_px"] for v in summary.validation]
    found = [v["keypoints_found"] for v in summary.validation]
    assert len(errors) == 3 and errors[-1] < 5.0 and found[-1] > 0.8 and found[-1] > found[0], (errors, found)

    # The checkpoint alone gives the network and what inference needs.
    model, meta = load_model(tmp_path)
    manifest = json.loads((rendered / "manifest.json").read_text())
    assert (meta.network, meta.class_name, meta.stride, meta.input_size, meta.stages) == ("light", CLASS, 8, 128, 3)
    assert np.allclose(meta.cuboid.extent, manifest["classes"][CLASS]["extent"])
    assert np.allclose(meta.cuboid.center, manifest["classes"][CLASS]["center"])
    frame = open_dataset([rendered]).frame(0)
    x = (torch.from_numpy(frame.image).permute(2, 0, 1)[None].float() / 255 - torch.tensor(meta.mean).view(1, 3, 1, 1)) / torch.tensor(meta.std).view(1, 3, 1, 1)
    with torch.no_grad():
        belief, affinity = model(x)[-1]
    assert float(belief.max()) <= 1.0  # probabilities, not logits
    (decoded,) = decode(belief[0].numpy(), affinity[0].numpy(), meta.stride, DecodeSettings())  # what infer runs
    truth = frame.objects[0].projected_cuboid
    inside = ((truth >= 0) & (truth < 128)).all(axis=1) & decoded.found
    assert inside.sum() >= 6 and np.median(np.linalg.norm(decoded.uv - truth, axis=1)[inside]) < 3.0


def _resume_config(data: Path, out: Path, max_steps: int) -> TrainConfig:
    return TrainConfig(
        data=[data], val_fraction=0.25, net="light", stages=2, epochs=3, batch_size=3, image_size=64, out=out,
        workers=0, max_steps=max_steps, save_every=2, keep_last=2, warmup_steps=2, seed=5,
    )


def test_resume_matches_an_uninterrupted_run(tmp_path):
    data = write_folder(tmp_path / "data", 8, size=80)
    straight = train(_resume_config(data, tmp_path / "straight", 5))
    first = train(_resume_config(data, tmp_path / "resumed", 3))
    assert first.steps == 3 and len(list_checkpoints(tmp_path / "resumed")) == 2  # keep_last
    second = train(_resume_config(data, tmp_path / "resumed", 5).model_copy(update={"resume": True}))
    assert second.steps == 5 and len(second.losses) == 2
    assert np.allclose(first.losses + second.losses, straight.losses, rtol=1e-5)
    assert straight.keys_seen == first.keys_seen + second.keys_seen  # same data order across the stop
    a = read_checkpoint(list_checkpoints(tmp_path / "straight")[-1])
    b = read_checkpoint(list_checkpoints(tmp_path / "resumed")[-1])
    assert (a["step"], a["epoch"], a["samples_done"]) == (b["step"], b["epoch"], b["samples_done"]) == (5, 2, 3)  # mid-epoch 2
    for name, tensor in a["model"].items():
        assert torch.allclose(tensor.float(), b["model"][name].float(), atol=1e-6), name
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()  # frozen layers have no state
    assert all(a["optimizer"]["state"][k]["step"] == b["optimizer"]["state"][k]["step"] == 5 for k in a["optimizer"]["state"])



class _KeyEncoder:
    """Stands in for FrameEncoder: a sample's key and augmentation seed, nothing decoded."""

    settings = type("Settings", (), {"seed": 0})

    def __call__(self, sample: dict, seed: int) -> dict:
        return {"key": sample["__key__"], "seed": seed}


def _numbered_frames(count: int, worker_id: int | None = None) -> list[dict]:
    """Stands in for a source: all frames, or (worker_id given) a worker's share, as the live stream splits."""
    info = torch.utils.data.get_worker_info()
    workers = info.num_workers if info else 1
    return [{"__key__": f"{i:06d}"} for i in range(count) if worker_id is None or i % workers == worker_id]


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("split", [True, False])
def test_resumed_iterable_epoch_continues_where_the_killed_one_stopped(workers, split):
    """A resumed epoch of an iterable source (remote shards; the live stream, which splits by itself)
    is the rest of the uninterrupted epoch, batch for batch and seed for seed: each worker's pass ends
    where it would have, so the stream renders and writes every shard."""
    from torch.utils.data import DataLoader

    from trainer.data import IterableSource

    def batches(samples_done: int) -> list[tuple]:
        source = IterableSource(functools.partial(_numbered_frames, 26), _KeyEncoder(), rank=0, world_size=1, batch_size=4,
                                split=split)
        source.set_position(1, samples_done)
        loader = DataLoader(source, batch_size=4, num_workers=workers, drop_last=True)
        return [(tuple(b["key"]), tuple(b["seed"].tolist())) for b in loader]

    uninterrupted = batches(0)
    assert len(uninterrupted) == 6  # 26 frames: whole batches of each worker's share (13)
    for trained in (1, 2, 3):
        assert batches(4 * trained) == uninterrupted[trained:]

def _run_cli(capsys, *options: str) -> str:
    assert main(["train", *options]) == 2
    return capsys.readouterr().err


def test_unknown_class(capsys, tmp_path):
    data = write_folder(tmp_path / "data", 2)
    message = _run_cli(capsys, "--data", str(data), "--object", "mug", "--out", str(tmp_path / "run"))
    assert "class 'mug' is not in the dataset (classes present: toy_box)" in message
    assert "Traceback" not in message


def test_no_images(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    assert "no images with .json annotations found" in _run_cli(capsys, "--data", str(tmp_path / "empty"))


def test_malformed_json(capsys, tmp_path):
    data = write_folder(tmp_path / "data", 2)
    (data / "000001.json").write_text('{"objects": [{"class": "toy_box", "projected_cuboid": "nope"}]}')
    message = _run_cli(
        capsys, "--data", str(data), "--val_fraction", "0", "--image-size", "64", "--workers", "0",
        "--epochs", "1", "--batch-size", "2", "--net", "light", "--out", str(tmp_path / "run"),
    )
    assert "000001.json: objects[0].projected_cuboid: expected" in message


def test_image_smaller_than_the_crop(capsys, tmp_path):
    data = write_folder(tmp_path / "data", 2, size=64)
    message = _run_cli(capsys, "--data", str(data), "--image-size", "96", "--workers", "0", "--out", str(tmp_path / "run"))
    assert "image 64x64 is smaller than the crop (image_size 96)" in message


def test_bad_options(capsys, tmp_path):
    assert "option 'image_size': must be a multiple of 8" in _run_cli(capsys, "--data", str(tmp_path), "--image-size", "100")
    assert "option 'data'" in _run_cli(capsys, "--out", str(tmp_path))


def test_stream_trains_on_frames_rendered_during_the_run(tmp_path):
    stream_config = GenerateConfig(
        nb_frames=8, width=64, height=64, out=tmp_path / "streamed", nb_objects=(1, 1), nb_distractors=(0, 1),
        frames_per_shard=4, workers=1, ray="local",
    )
    (tmp_path / "stream.yaml").write_text(stream_config.to_yaml())
    config = TrainConfig(
        stream=tmp_path / "stream.yaml", net="light", stages=1, epochs=2, batch_size=4, image_size=64,
        out=tmp_path / "run", workers=1, amp=False,  # a spawned loader process: the source must pickle
    )
    try:
        summary = train(config)
    finally:
        disconnect()  # Ray was started by this run; leave none behind for other tests
    assert summary.steps == 4  # 2 epochs x 8 frames / batch 4
    assert sorted(summary.keys_seen) == sorted([f"{i:06d}" for i in range(8)] * 2)
    manifest = json.loads((tmp_path / "streamed" / "manifest.json").read_text())
    assert manifest["complete"] and [s["name"] for s in manifest["shards"]] == ["shard-000000.tar", "shard-000001.tar"]
    assert len(open_dataset([tmp_path / "streamed"])) == 8  # complete, readable shards
    _, meta = load_model(tmp_path / "run")
    assert meta.class_name == CLASS and meta.cuboid == target_cuboids(stream_config)[CLASS]
    assert busy_renderer_cpus(stream_config) == 0  # every shard on disk: later epochs render nothing


@pytest.mark.parametrize(
    ("threads", "device", "renderers", "world_size", "expected"),
    [(0, "cpu", 0, 1, 4), (0, "cpu", 2, 1, 2), (0, "cpu", 6, 1, 1), (0, "cpu", 0, 2, 2), (3, "cpu", 2, 1, 3), (0, "cuda", 0, 1, None)],
)
def test_threads_leave_the_renderers_their_cores(monkeypatch, threads, device, renderers, world_size, expected):
    monkeypatch.setattr("trainer.loop.available_cores", lambda: 4)
    monkeypatch.setenv("WORLD_SIZE", str(world_size))
    config = TrainConfig(data=[Path("unused")], threads=threads)
    assert choose_threads(config, torch.device(device), renderers) == expected


@pytest.mark.parametrize(
    ("amp", "cpu_bf16", "device", "expected"),
    [(True, False, "cpu", None), (True, True, "cpu", torch.bfloat16), (False, True, "cpu", None), (False, False, "cuda", None)],
)
def test_mixed_precision_on_cpu_only_when_asked(amp, cpu_bf16, device, expected):
    config = TrainConfig(data=[Path("unused")], amp=amp, cpu_bf16=cpu_bf16)
    assert autocast_dtype(config, torch.device(device)) == expected


def test_cpu_bf16_training_steps_run_and_lower_the_loss(rendered, tmp_path):
    config = TrainConfig(
        data=[rendered], val_data=[rendered], net="light", epochs=12, batch_size=8, lr=3e-3, image_size=128,
        out=tmp_path, workers=0, augment=False, warmup_steps=2, cpu_bf16=True, save_every=1000,
    )
    summary = train(config)
    assert np.mean(summary.losses[-3:]) < summary.losses[0] / 2, summary.losses


def test_validation_error_is_measured_with_the_deployed_decoder():
    """keypoint_errors decodes like `dope infer`: exact maps give ~0 px, empty maps find nothing."""
    from infer_maps import draw_maps

    from trainer.meta import ModelMeta
    from trainer.validation import keypoint_errors

    meta = ModelMeta("light", "box", None, 3, 128)
    truth = np.array([[20.0, 24.0], [90.0, 20.0], [92.0, 100.0], [18.0, 96.0], [30.0, 40.0], [80.0, 36.0],
                      [84.0, 88.0], [28.0, 84.0], [55.0, 60.0]])
    belief, affinity = draw_maps([truth], 128, 128)
    keypoints = np.zeros((1, 8, 9, 2), np.float32)
    keypoints[0, 0] = truth
    errors, missed = keypoint_errors(belief[None], affinity[None], None, keypoints, np.array([1]), 128, meta)
    assert missed == 0 and len(errors) == 9 and max(errors) < 0.2
    shifted = keypoints.copy()
    shifted[0, 0, :, 0] += 3.0  # the decoder finds the maps' keypoints, 3 px from these
    errors, _ = keypoint_errors(belief[None], affinity[None], None, shifted, np.array([1]), 128, meta)
    assert np.allclose(errors, 3.0, atol=0.2)
    errors, missed = keypoint_errors(np.zeros_like(belief)[None], affinity[None], None, keypoints, np.array([1]), 128, meta)
    assert errors == [] and missed == 9
