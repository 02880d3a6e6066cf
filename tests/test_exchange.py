"""The exchange format: shard layout and bytes, member names, manifest versions."""

from __future__ import annotations

import json
import tarfile

import pytest

from dope_stream.errors import DopeError
from dope_stream.exchange import (
    FORMAT_VERSION, MANIFEST_NAME, Sample, read_manifest, read_shard, shard_member_offsets, shard_name, shard_ranges,
    split_member_name, write_manifest, write_shard,
)
from dope_stream.reader import open_dataset

SAMPLES = [Sample(i, {"json": f'{{"objects": [], "i": {i}}}'.encode(), "png": bytes([i]) * 7, "seg.png": b"s"}) for i in range(3)]


def test_shard_layout_is_webdataset_and_deterministic(tmp_path):
    write_shard(tmp_path / "a.tar", SAMPLES)
    write_shard(tmp_path / "b.tar", SAMPLES)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar", "b.tar"]  # no temporaries left
    with tarfile.open(tmp_path / "a.tar") as tar:
        members = tar.getmembers()
    # KEY.MEMBER, a sample's members adjacent and sorted, fixed metadata
    assert [m.name for m in members[:3]] == ["000000.json", "000000.png", "000000.seg.png"]
    assert {(m.mtime, m.mode, m.uname, m.gname) for m in members} == {(0, 0o444, "dope", "dope")}


def test_shard_readers_agree(tmp_path):
    path = tmp_path / shard_name(0)
    write_shard(path, SAMPLES)
    streamed = list(read_shard(path))
    assert [s["__key__"] for s in streamed] == ["000000", "000001", "000002"]
    assert streamed[1]["png"] == bytes([1]) * 7 and streamed[1]["seg.png"] == b"s"
    data = path.read_bytes()
    for key, member, offset, size in shard_member_offsets(path):
        assert data[offset:offset + size] == streamed[int(key)][member]
    assert len(open_dataset([tmp_path])) == 3


def test_member_names_split_at_the_first_dot_of_the_base_name():
    assert split_member_name("000123.seg.png") == ("000123", "seg.png")
    assert split_member_name("scene_1/000123.depth.png") == ("scene_1/000123", "depth.png")
    assert split_member_name("README") == ("README", "")


def test_shard_ranges_cover_every_frame_once():
    assert shard_ranges(12, 5) == [range(0, 5), range(5, 10), range(10, 12)]
    assert shard_name(7) == "shard-000007.tar"


def test_manifest_carries_the_format_version(tmp_path):
    write_manifest(tmp_path, {"units": "m", "classes": {}})
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert (manifest["tool"], manifest["format_version"], manifest["units"]) == ("dope_stream", FORMAT_VERSION, "m")
    assert read_manifest(tmp_path) == manifest


def test_old_manifests_without_a_version_still_read(tmp_path):
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"tool": "dope_stream", "units": "cm"}))
    assert read_manifest(tmp_path)["units"] == "cm"
    assert read_manifest(tmp_path / "absent") is None


def test_a_newer_format_version_is_one_clear_error(tmp_path):
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"format_version": FORMAT_VERSION + 1}))
    with pytest.raises(DopeError, match=f"{MANIFEST_NAME}: format_version {FORMAT_VERSION + 1}; this dope-stream reads"):
        read_manifest(tmp_path)
