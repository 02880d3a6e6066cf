"""Streaming synthesis on Ray: exactly-once delivery, byte-identical shards, backpressure, faults, DDP.

One local Ray instance (2 CPUs) serves the whole module; frames are 64x64 with few objects, so the
time goes into starting processes, not rendering.
"""

from __future__ import annotations

import filecmp
import gc
import json
import multiprocessing
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import ray
import torch
from torch.utils.data import DataLoader

from conftest import tiny_generate_config
from dope_stream.errors import DopeError
from dope_stream.generate import generate
from dope_stream.generate import generate as generate_with_ray
from dope_stream.stream.dataset import LOADER_CONTEXT, RayFrameDataset
from dope_stream.stream.frames import FrameStream
from dope_stream.stream.session import cluster_address, connect, disconnect
from dope_stream.exchange import MANIFEST_NAME, decode_members, encode_image, read_shard, shard_name
from dope_stream.writers import open_writer

NB_FRAMES = 24
FRAMES_PER_SHARD = 4


def stream_config(out: Path, **overrides):
    values = dict(nb_frames=NB_FRAMES, frames_per_shard=FRAMES_PER_SHARD, nb_distractors=2, seed=11, workers=2)
    values.update(overrides)
    return tiny_generate_config(out, **values)


@pytest.fixture(scope="module")
def ray_address():
    started = connect("local", num_cpus=2)
    yield cluster_address()
    if started:
        disconnect()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The same dataset rendered by a plain local `dope generate` run."""
    return generate(stream_config(tmp_path_factory.mktemp("local") / "dataset", workers=1))


def shard_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("shard-*.tar"))


def assert_same_shards(folder: Path, reference: Path) -> None:
    names = shard_files(reference)
    assert len(names) == NB_FRAMES // FRAMES_PER_SHARD
    assert shard_files(folder) == names
    for name in names:
        assert filecmp.cmp(folder / name, reference / name, shallow=False), f"{name} differs from the local run"
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["complete"] and [s["name"] for s in manifest["shards"]] == names


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_cluster_is_one_line_error(tmp_path):
    # A subprocess, so that this module's own Ray connection cannot hide the failure.
    address = f"127.0.0.1:{unused_port()}"
    command = [sys.executable, "-m", "dope_app.cli", "generate", "--ray", address, "--out", str(tmp_path / "d")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and address in lines[0] and "cannot reach" in lines[0], result.stderr
    # The output folder is checked (created) before the cluster is joined; nothing is written into it.
    assert not any((tmp_path / "d").iterdir())


def as_arrays(sample: dict) -> dict:
    """A sample's members decoded, tensors (from a DataLoader's conversion) back to numpy."""
    return decode_members({k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in sample.items()})


def assert_same_members(sample: dict, expected: dict) -> None:
    """Exactly the same decoded members: pixels, ids, millimetres (dtype and shape too), annotation."""
    assert set(sample) == set(expected)
    for name, value in expected.items():
        if isinstance(value, np.ndarray):
            assert sample[name].dtype == value.dtype and np.array_equal(sample[name], value), f"{sample['__key__']}.{name}"
        else:
            assert sample[name] == value, f"{sample['__key__']}.{name}"


def reference_frames(reference: Path) -> dict[str, dict]:
    return {s["__key__"]: decode_members(s) for shard in sorted(reference.glob("shard-*.tar")) for s in read_shard(shard)}


def test_loader_workers_get_every_frame_once_and_write_the_local_shards(ray_address, reference, tmp_path):
    config = stream_config(tmp_path / "streamed", ray=ray_address)
    dataset = RayFrameDataset(config, write_shards=True)
    loader = DataLoader(dataset, batch_size=None, num_workers=2, multiprocessing_context=LOADER_CONTEXT)
    samples = [as_arrays(sample) for sample in loader]
    keys = [sample["__key__"] for sample in samples]
    assert sorted(keys) == [f"{i:06d}" for i in range(NB_FRAMES)]  # each index exactly once
    assert set(samples[0]) == {"__key__", "jpg", "json", "seg.png", "depth.png"}
    assert_same_shards(config.out, reference)
    # Handed over decoded, yet exactly what the shards decode to: the JPEG pixels included.
    expected = reference_frames(reference)
    for sample in samples:
        assert_same_members(sample, expected[sample["__key__"]])

    # A second pass reads the finished shards back (bytes): the same frames.
    again = {s["__key__"]: s for s in DataLoader(dataset, batch_size=None, num_workers=0)}
    assert sorted(again) == sorted(keys)
    assert all(isinstance(s["jpg"], bytes) for s in again.values())
    for sample in samples:
        assert_same_members(decode_members(again[sample["__key__"]]), sample)


def test_unkept_stream_hands_over_the_pixels_the_jpeg_was_encoded_from(ray_address, tmp_path):
    config = stream_config(tmp_path, ray=ray_address, nb_frames=6)
    decoded = {s["__key__"]: s for s in RayFrameDataset(config, write_shards=False)}
    encoded = {s["__key__"]: s for s in RayFrameDataset(config, write_shards=False, decoded=False)}
    assert sorted(decoded) == sorted(encoded) == [f"{i:06d}" for i in range(6)]
    for key, sample in encoded.items():
        shortcut = decoded[key]
        # No codec ran: the lossless rendered pixels, which encode to the very bytes the encoded
        # stream handed over; everything else decodes to the same arrays and annotation.
        assert isinstance(shortcut["jpg"], np.ndarray)
        assert encode_image(shortcut["jpg"], "jpg", config.jpg_quality) == sample["jpg"]
        expected = decode_members(sample)
        expected["jpg"] = shortcut["jpg"]
        assert_same_members(shortcut, expected)


def test_generate_with_ray_equals_local_run_and_resumes(ray_address, reference, tmp_path):
    config = stream_config(tmp_path / "generated", ray=ray_address)
    generate_with_ray(config)
    assert_same_shards(config.out, reference)

    # Simulate a kill: one shard lost, a half-written temporary left behind.
    (config.out / shard_name(2)).unlink()
    (config.out / (shard_name(2) + ".tmp")).write_bytes(b"truncated")
    untouched = {name: (config.out / name).stat().st_mtime_ns for name in shard_files(config.out)}
    generate_with_ray(config)
    assert_same_shards(config.out, reference)
    assert not list(config.out.glob("*.tmp"))
    assert {name: (config.out / name).stat().st_mtime_ns for name in untouched} == untouched


def test_slow_consumer_never_has_more_than_the_buffer_rendered_ahead(ray_address, tmp_path):
    bound = 4
    config = stream_config(tmp_path, ray=ray_address, nb_frames=16)
    stream = FrameStream(config, range(16), actors=2, buffer=bound, trace=True)
    indices = []
    for frame in stream:
        indices.append(frame.index)
        time.sleep(0.15)  # a trainer much slower than the renderers
    assert sorted(indices) == list(range(16))
    assert len(stream.stats.rendered_at) == len(stream.stats.consumed_at) == 16
    buffered = stream.stats.max_buffered()
    assert buffered <= bound
    assert buffered >= 2  # the renderers did run ahead while the consumer slept...
    assert stream.stats.idle_share() > 0.5  # ...and then waited for it


def test_killed_actor_frames_are_rendered_again_once(ray_address, reference, tmp_path):
    config = stream_config(tmp_path / "killed", ray=ray_address)
    stream = FrameStream(config, range(NB_FRAMES), actors=2, buffer=8)
    writer = open_writer(config, {})
    indices = []
    for frame in stream:
        indices.append(frame.index)
        writer.add(frame.encoded)
        if len(indices) == 4:
            ray.kill(stream.actors[0])
    writer.close()
    assert sorted(indices) == list(range(NB_FRAMES))
    assert stream.stats.replaced_actors >= 1
    assert shard_files(config.out) == shard_files(reference)
    for name in shard_files(reference):
        assert filecmp.cmp(config.out / name, reference / name, shallow=False)


def test_bad_assets_in_the_actor_are_one_dope_error(ray_address, tmp_path):
    empty = tmp_path / "no_hdr"
    empty.mkdir()
    stream = FrameStream(stream_config(tmp_path, ray=ray_address, hdri=empty), range(2), actors=1)
    with pytest.raises(DopeError, match="no_hdr") as caught:
        list(stream)
    assert "Traceback" not in str(caught.value)


def test_forked_loader_workers_are_refused(ray_address, tmp_path):
    dataset = RayFrameDataset(stream_config(tmp_path, ray=ray_address), write_shards=False)
    loader = DataLoader(dataset, batch_size=None, num_workers=1, multiprocessing_context="fork")
    batches = iter(loader)
    with pytest.raises(DopeError, match="spawn"):
        next(batches)
    # The refused worker must not outlive the loader: a forked worker holds this process's pipes
    # (the Ray session's reaper among them) open.
    del batches
    gc.collect()
    assert not multiprocessing.active_children()


def _ddp_rank(rank: int, world: int, init_file: str, address: str, out: str, result_folder: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        dataset = RayFrameDataset(stream_config(Path(out), ray=address), write_shards=False)
        keys = [sample["__key__"] for sample in DataLoader(dataset, batch_size=None)]
        Path(result_folder, f"rank{rank}.json").write_text(json.dumps(keys))
    finally:
        torch.distributed.destroy_process_group()


def test_ddp_ranks_receive_disjoint_frames(ray_address, tmp_path):
    args = (2, str(tmp_path / "ddp_init"), ray_address, str(tmp_path / "unused"), str(tmp_path))
    torch.multiprocessing.spawn(_ddp_rank, args=args, nprocs=2, join=True)
    rank0, rank1 = (set(json.loads((tmp_path / f"rank{r}.json").read_text())) for r in range(2))
    assert rank0 and rank1 and not rank0 & rank1
    assert sorted(rank0 | rank1) == [f"{i:06d}" for i in range(NB_FRAMES)]
