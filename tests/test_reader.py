import json

import numpy as np
import pytest
from toy_dataset import BOX, encode_png, write_folder, write_shards

from dope_stream.errors import DopeError
from dope_stream.geometry import Intrinsics, Pose, projected_cuboid
from dope_stream.reader import (
    Frame, decode_sample, detect_unit, iter_raw_samples, open_dataset, select_objects, stream_shards,
)


def _reprojected(frame: Frame) -> np.ndarray:
    obj = frame.objects[0]
    return projected_cuboid(BOX, Pose.from_quaternion_xyzw(obj.quaternion_xyzw, obj.location), frame.intrinsics)


def test_folder_and_shards_read_the_same_frames(tmp_path):
    folder = open_dataset([write_folder(tmp_path / "folder", 5, seed=3)])
    shards = open_dataset([write_shards(tmp_path / "shards", 5, per_shard=2, seed=3)])
    assert len(folder) == len(shards) == 5
    assert folder.unit == "m" and set(folder.cuboids) == {"toy_box"}
    assert np.allclose(folder.cuboids["toy_box"].extent, BOX.extent)
    for i in range(5):
        a, b = folder.frame(i), shards.frame(i)
        assert a.key == b.key == f"{i:06d}"
        assert a.image.shape == (128, 128, 3) and a.image.dtype == np.uint8
        assert np.array_equal(a.image, b.image)
        # Annotation agrees with an independent projection of the stored pose.
        assert np.allclose(a.objects[0].projected_cuboid, _reprojected(a), atol=1e-6)


def test_image_is_rgb(tmp_path):
    write_folder(tmp_path, 1, size=16)  # the size its camera_data declares
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    (tmp_path / "000000.png").write_bytes(encode_png(red))  # encode_png expects RGB
    image = open_dataset([tmp_path]).frame(0).image
    assert image.shape == (16, 16, 3) and (image[..., 0] == 255).all() and (image[..., 2] == 0).all()


def _ndds_variant(annotation: dict) -> dict:
    obj = dict(annotation["objects"][0])
    obj["location"] = [100 * x for x in obj["location"]]
    obj["projected_cuboid_centroid"] = obj["projected_cuboid"][8]
    obj["projected_cuboid"] = obj["projected_cuboid"][:8]
    return {"camera_data": annotation["camera_data"], "objects": [obj]}


def _blenderproc_variant(annotation: dict) -> dict:
    obj = dict(annotation["objects"][0])
    obj["location"] = [100 * x for x in obj["location"]]
    obj["visibility"], obj["px_count_all"] = 300, 1200
    return {"camera_data": annotation["camera_data"], "objects": [obj]}


@pytest.mark.parametrize("variant,visibility", [(_ndds_variant, 1.0), (_blenderproc_variant, 0.25)])
def test_cm_variants_become_canonical(tmp_path, variant, visibility):
    write_folder(tmp_path, 1, manifest=False)
    reference = open_dataset([tmp_path]).frame(0)
    annotation = json.loads((tmp_path / "000000.json").read_text())
    (tmp_path / "000000.json").write_text(json.dumps(variant(annotation)))
    dataset = open_dataset([tmp_path])  # no manifest: unit detected per file
    frame = dataset.frame(0)
    assert np.allclose(frame.objects[0].location, reference.objects[0].location)
    assert np.allclose(frame.objects[0].projected_cuboid, reference.objects[0].projected_cuboid)
    assert frame.objects[0].visibility == pytest.approx(visibility)
    assert len(frame.annotation["objects"][0]["projected_cuboid"]) == 9


def test_declared_unit_and_manifest_unit(tmp_path):
    write_folder(tmp_path, 1, manifest=False)
    plain = open_dataset([tmp_path]).frame(0).objects[0].location
    declared = open_dataset([tmp_path], unit="cm").frame(0).objects[0].location
    assert np.allclose(declared, plain * 0.01)
    (tmp_path / "manifest.json").write_text(json.dumps({"units": "cm"}))
    assert open_dataset([tmp_path], unit="m").unit == "cm"  # the manifest wins over the caller


def test_a_units_key_of_another_json_type_is_guessed_past():
    # Found by the fuzz test: a list there is unhashable; the file's unit is then guessed as without the key.
    assert detect_unit({"objects": [], "units": []}) == detect_unit({"objects": []})
    assert detect_unit({"objects": [{"location": [10.0, 20.0, 90.0]}], "units": {"m": 1}}) == "cm"
    assert detect_unit({"objects": [], "units": "cm"}) == "cm"


def test_filter_by_class_and_visibility(tmp_path):
    write_folder(tmp_path, 1)
    path = tmp_path / "000000.json"
    annotation = json.loads(path.read_text())
    other = dict(annotation["objects"][0], **{"class": "mug"})
    hidden = dict(annotation["objects"][0], visibility=0.0)
    annotation["objects"] += [other, hidden]
    path.write_text(json.dumps(annotation))
    frame = open_dataset([tmp_path]).frame(0)
    assert len(select_objects(frame, "toy_box")) == 1
    assert len(select_objects(frame, None)) == 2
    assert len(select_objects(frame, "toy_box", min_visibility=-1)) == 2


def test_streams_shards_by_brace_pattern(tmp_path):
    write_shards(tmp_path, 5, per_shard=2)
    keys = [s["__key__"] for s in stream_shards(str(tmp_path / "shard-{000000..000002}.tar"))]
    assert keys == [f"{i:06d}" for i in range(5)]
    mixed = list(iter_raw_samples([tmp_path / "shard-000000.tar", str(tmp_path / "shard-{000001..000002}.tar")]))
    assert [s["__key__"] for s in mixed] == keys
    assert decode_sample(mixed[4]).objects[0].class_name == "toy_box"


def test_unknown_class_lists_classes(tmp_path):
    dataset = open_dataset([write_folder(tmp_path, 2)])
    with pytest.raises(DopeError, match="class 'mug' is not in the dataset.*toy_box"):
        dataset.check_class("mug")


def test_no_images(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(DopeError, match="no images with .json annotations"):
        open_dataset([tmp_path])
    with pytest.raises(DopeError, match="no such file or folder"):
        open_dataset([tmp_path / "missing"])


@pytest.mark.parametrize(
    "content,message",
    [
        ("{not json", "000000.json: not valid JSON"),
        ('{"camera_data": {}}', "missing field 'objects'"),
        ('{"objects": [{"class": "toy_box", "projected_cuboid": [[1, 2]]}]}', r"objects\[0\].projected_cuboid: expected 9"),
        ('{"objects": [{"projected_cuboid": []}]}', r"objects\[0\].class: missing"),
        ('{"objects": [{"class": "a", "projected_cuboid": [[1, 2]] * 9, "visibility": "x"}]}', "not valid JSON"),
    ],
)
def test_malformed_annotation_names_file_and_field(tmp_path, content, message):
    write_folder(tmp_path, 1)
    (tmp_path / "000000.json").write_text(content)
    with pytest.raises(DopeError, match=message):
        open_dataset([tmp_path]).frame(0)


def test_undecodable_image(tmp_path):
    write_folder(tmp_path, 1)
    (tmp_path / "000000.png").write_bytes(b"not a png")
    with pytest.raises(DopeError, match="000000.png: image cannot be decoded"):
        open_dataset([tmp_path]).frame(0)


def test_intrinsics_round_trip(tmp_path):
    frame = open_dataset([write_folder(tmp_path, 1)]).frame(0)
    assert frame.intrinsics == Intrinsics.from_fov(128, 128, 50.0)
