"""`dope view`: overlays for shards and folders, drawn where the annotations say."""

from __future__ import annotations

import json

import cv2
import numpy as np

from dope_app.cli import main
from dope_stream.generate import generate
from dope_stream.reader import open_dataset

from conftest import tiny_generate_config


def test_view_shards_draws_cuboids_and_masks(generated_shards, tmp_path, capsys):
    out = tmp_path / "view"
    assert main(["view", str(generated_shards), "--out", str(out), "--max", "4"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["000000.png", "000001.png", "000002.png", "000003.png", "contact_sheet.png"]
    dataset = open_dataset([generated_shards])
    changed_on_edges = 0
    for index in range(4):
        sample = dataset[index]
        image = cv2.imdecode(np.frombuffer(sample["jpg"], np.uint8), cv2.IMREAD_COLOR)
        overlay = cv2.imread(str(out / f"{sample['__key__']}.png"))
        seg = cv2.imdecode(np.frombuffer(sample["seg.png"], np.uint8), cv2.IMREAD_UNCHANGED)
        assert overlay.shape == image.shape
        assert (overlay[seg > 0] != image[seg > 0]).any(axis=1).mean() > 0.9  # masks tinted
        for obj in json.loads(sample["json"])["objects"]:
            (u0, v0), (u1, v1) = obj["projected_cuboid"][0], obj["projected_cuboid"][1]
            u, v = round((u0 + u1) / 2), round((v0 + v1) / 2)  # midpoint of edge 0-1
            if 0 <= u < 64 and 0 <= v < 64:
                changed_on_edges += int(np.abs(overlay[v, u].astype(int) - image[v, u]).sum() > 60)
    assert changed_on_edges > 0
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet.shape == (256, 1024, 3)


def test_view_folder_layout_and_bad_max(tmp_path, capsys):
    folder = generate(tiny_generate_config(tmp_path / "folder", layout="folder", nb_frames=2))
    assert main(["view", str(folder), "--out", str(tmp_path / "v")]) == 0
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["000000.png", "000001.png", "contact_sheet.png"]
    capsys.readouterr()
    assert main(["view", str(folder), "--max", "0"]) == 2
    assert capsys.readouterr().err.strip() == "dope view: error: --max must be at least 1, got 0"
    assert main(["view", str(tmp_path / "nothing")]) == 2
