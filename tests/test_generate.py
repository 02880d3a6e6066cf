"""`dope generate`: shards and folders, manifest, determinism, resume, and every bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from dope_app.cli import main
from dope_stream.errors import DopeError
from dope_stream.generate import generate
from dope_stream.writers import frames_to_render

from conftest import tiny_generate_config

ASSETS = Path(__file__).resolve().parents[1] / "dope_stream" / "assets"


def shard_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("shard-*.tar"))}


def test_shards_open_with_webdataset_and_hold_the_manifest_frames(generated_shards):
    import webdataset as wds

    manifest = json.loads((generated_shards / "manifest.json").read_text())
    assert manifest["units"] == "m" and manifest["complete"] and manifest["seed"] == 0
    cuboid = manifest["classes"]["003_cracker_box"]
    assert len(cuboid["center"]) == 3 and cuboid["extent"][2] == pytest.approx(0.2134, abs=1e-3)
    listed = {s["name"]: range(s["first_frame"], s["first_frame"] + s["nb_frames"]) for s in manifest["shards"]}
    assert sorted(listed) == sorted(p.name for p in generated_shards.glob("*.tar"))
    for name, frames in listed.items():
        samples = list(wds.WebDataset(str(generated_shards / name), shardshuffle=False))
        assert [s["__key__"] for s in samples] == [f"{i:06d}" for i in frames]
        for sample in samples:
            assert set(sample) >= {"jpg", "json", "seg.png", "depth.png"}
            annotation = json.loads(sample["json"])
            image = cv2.imdecode(np.frombuffer(sample["jpg"], np.uint8), cv2.IMREAD_COLOR)
            seg = cv2.imdecode(np.frombuffer(sample["seg.png"], np.uint8), cv2.IMREAD_UNCHANGED)
            depth = cv2.imdecode(np.frombuffer(sample["depth.png"], np.uint8), cv2.IMREAD_UNCHANGED)
            assert image.shape == (64, 64, 3) and seg.dtype == depth.dtype == np.uint16
            for obj in annotation["objects"]:
                assert obj["px_count_visib"] == int((seg == obj["segmentation_id"]).sum())
            # depth in millimetres where something is, 0 elsewhere
            assert ((depth > 0) == (seg > 0)).all()
            assert depth[seg > 0].min() > 100 and depth.max() < 3000


def test_same_seed_same_bytes_with_one_or_two_workers(tmp_path, generated_shards):
    again = generate(tiny_generate_config(tmp_path / "two_workers", workers=2))
    assert shard_bytes(again) == shard_bytes(generated_shards)
    other_seed = generate(tiny_generate_config(tmp_path / "seed1", seed=1, nb_frames=2))
    assert shard_bytes(other_seed)["shard-000000.tar"] != shard_bytes(generated_shards)["shard-000000.tar"]


def test_resume_redoes_only_the_unfinished_shard(tmp_path, generated_shards):
    out = tmp_path / "resume"
    config = tiny_generate_config(out)
    generate(config)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    # What a kill leaves: a finished shard missing and the truncated temporary of the one being written.
    (out / "shard-000001.tar").unlink()
    (out / "shard-000001.tar.tmp").write_bytes(b"truncated")
    assert frames_to_render(out, config) == [2, 3]
    assert not (out / "shard-000001.tar.tmp").exists()
    (out / "shard-000001.tar.tmp").write_bytes(b"truncated")
    time.sleep(0.01)
    generate(config)
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    assert after["shard-000000.tar"] == before["shard-000000.tar"]
    assert after["shard-000002.tar"] == before["shard-000002.tar"]
    assert not list(out.glob("*.tmp"))
    assert shard_bytes(out) == shard_bytes(generated_shards)
    assert frames_to_render(out, config) == []


def test_resume_after_a_real_kill(tmp_path, generated_shards):
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "dope_app.cli", "generate", "--scene", "flying", "--out", str(out), "--nb_frames", "6",
               "--width", "64", "--height", "64", "--nb_objects", "1,2", "--nb_distractors", "1,3",
               "--frames_per_shard", "2", "--spp", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (out / "shard-000000.tar").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert main(command[3:]) == 0
    assert shard_bytes(out) == shard_bytes(generated_shards)


def test_resume_with_another_config_is_refused(tmp_path, generated_shards):
    out = tmp_path / "mismatch"
    generate(tiny_generate_config(out, nb_frames=2))
    with pytest.raises(DopeError, match="seed"):
        generate(tiny_generate_config(out, nb_frames=2, seed=5))
    generate(tiny_generate_config(out, nb_frames=2, workers=2, stream_buffer=7))  # how it is run may change


def test_folder_layout_files_and_resume(tmp_path):
    out = tmp_path / "folder"
    config = tiny_generate_config(out, layout="folder", nb_frames=3)  # png by default in this layout
    generate(config)
    names = sorted(os.listdir(out))
    assert names == sorted(["manifest.json"] + [f"{i:06d}.{m}" for i in range(3) for m in ("png", "json", "seg.png", "depth.png")])
    # The reference trainer's listing: every `*.png` with a `.json` of the same name beside it.
    assert sorted(p.name for p in out.glob("*.png") if p.with_suffix(".json").exists()) == [f"{i:06d}.png" for i in range(3)]
    assert json.loads((out / "manifest.json").read_text())["frames_done"] == 3
    untouched = (out / "000000.png").stat().st_mtime_ns
    (out / "000001.json").unlink()
    assert frames_to_render(out, config) == [1]
    generate(config)
    assert (out / "000001.json").exists() and (out / "000000.png").stat().st_mtime_ns == untouched
    image = cv2.imread(str(out / "000002.png"), cv2.IMREAD_UNCHANGED)
    assert image.shape == (64, 64, 3)


# --- bad input: one clear line through the CLI ------------------------------------------------------


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def _bad_inputs(root: Path) -> dict[str, tuple[list[str], str]]:
    """case -> (extra CLI options, text the error line must contain)."""
    broken = _write(root / "broken" / "broken.ply", b"ply\nformat binary_little_endian 1.0\nelement vertex 99\ngarbage")
    no_faces = _write(root / "nofaces" / "points.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    _write(root / "notex" / "model.mtl", "newmtl m\nmap_Kd missing_texture.png\n")
    missing_texture = _write(root / "notex" / "model.obj", "mtllib model.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    (root / "empty").mkdir()
    _write(root / "badphoto" / "photo.jpg", b"this is not a jpeg")
    return {
        "missing mesh": (["--obj", str(root / "nope.obj")], "nope.obj"),
        "broken mesh": (["--obj", str(broken)], "broken.ply"),
        "mesh without faces": (["--obj", str(no_faces)], "points.obj"),
        "missing texture": (["--obj", str(missing_texture)], "missing_texture.png"),
        "empty hdri folder": (["--hdri", str(root / "empty")], "hdri"),
        "empty backgrounds folder": (["--backgrounds", str(root / "empty")], "backgrounds"),
        "unreadable image": (["--backgrounds", str(root / "badphoto")], "photo.jpg"),
        "range 5,2": (["--nb_objects", "5,2"], "nb_objects"),
        "negative count": (["--nb_distractors", "-1"], "nb_distractors"),
        "zero image size": (["--width", "0"], "width"),
        "unknown renderer": (["--renderer", "blender"], "renderer"),
        "renderer nvisii": (["--renderer", "nvisii"], "nvisii"),
        "duplicate class names": (["--obj", str(ASSETS / "objects/003_cracker_box/model.obj"), str(ASSETS / "objects/003_cracker_box/model.obj")], "class name"),
    }


BAD_INPUT_CASES = [
    "missing mesh", "broken mesh", "mesh without faces", "missing texture", "empty hdri folder",
    "empty backgrounds folder", "unreadable image", "range 5,2", "negative count", "zero image size",
    "unknown renderer", "renderer nvisii", "duplicate class names",
]


@pytest.mark.parametrize("case", BAD_INPUT_CASES)
def test_bad_input_gives_one_clear_line(case, tmp_path, capsys):
    options, expected = _bad_inputs(tmp_path)[case]
    out = tmp_path / "out"
    code = main(["generate", "--out", str(out), "--nb_frames", "1", "--width", "32", "--height", "32", *options])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("dope generate: error:") and expected in err, err
    assert not (out / "manifest.json").exists()
