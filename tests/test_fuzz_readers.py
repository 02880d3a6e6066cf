"""Fuzzing the annotation and manifest readers (hypothesis): any malformed input ends in one
DopeError naming the file, never another exception."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from toy_dataset import write_shards

from dope_stream.config import GenerateConfig
from dope_stream.errors import DopeError
from dope_stream.reader import decode_sample, open_dataset
from dope_stream.writers import frames_to_render

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
KEYS = ("objects", "camera_data", "class", "projected_cuboid", "projected_cuboid_centroid", "visibility", "location",
        "quaternion_xyzw", "px_count_all", "intrinsics", "width", "height", "fx", "fy", "cx", "cy", "units", "classes",
        "cuboid", "center", "extent", "shards", "name", "nb_frames", "members", "config")
scalars = st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats() | st.text(max_size=4)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=10) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=3), inner, max_size=5),
    max_leaves=30,
)
numbers = st.floats(-1e4, 1e4) | st.integers(-10, 300)


def either(valid):
    """Mostly the right shape, sometimes anything at all."""
    return valid | json_values


def points(count: int):
    return st.lists(st.lists(numbers, min_size=2, max_size=2), min_size=count, max_size=count)


annotated_object = st.fixed_dictionaries({}, optional={
    "class": either(st.sampled_from(["toy_box", "mug"])), "name": json_values,
    "projected_cuboid": either(points(9) | points(8)), "projected_cuboid_centroid": either(points(1).map(lambda p: p[0])),
    "visibility": either(numbers), "px_count_all": either(numbers),
    "location": either(st.lists(numbers, min_size=3, max_size=3)), "quaternion_xyzw": either(st.lists(numbers, min_size=4, max_size=4)),
})
camera = st.fixed_dictionaries({}, optional={
    "width": either(st.sampled_from([8, 16])), "height": either(st.sampled_from([8, 16])),
    "intrinsics": either(st.fixed_dictionaries({}, optional={k: either(numbers) for k in ("fx", "fy", "cx", "cy")})),
})
annotation = either(st.fixed_dictionaries({}, optional={"objects": either(st.lists(annotated_object, max_size=3)), "camera_data": either(camera)}))
cuboid = st.fixed_dictionaries({}, optional={"center": either(st.lists(numbers, min_size=3, max_size=3)),
                                             "extent": either(st.lists(numbers, min_size=3, max_size=3))})
manifest = either(st.fixed_dictionaries({}, optional={
    "units": either(st.sampled_from(["m", "cm", "mm"])),
    "classes": either(st.dictionaries(st.sampled_from(["toy_box", "mug"]), either(cuboid | st.fixed_dictionaries({"cuboid": cuboid})))),
    "shards": either(st.lists(st.fixed_dictionaries({}, optional={"name": either(st.just("shard-000000.tar")), "nb_frames": either(st.integers(0, 3))}))),
    "members": either(st.lists(st.sampled_from(["png", "json", "seg.png"]), max_size=3)),
    "config": json_values,
}))
encoded = st.builds(lambda value: json.dumps(value).encode(), annotation) | st.binary(max_size=40)
IMAGE = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()


def raises_only_named_errors(call, name: str) -> None:
    try:
        call()
    except DopeError as err:
        assert name in str(err), f"{err!r} does not name {name}"


@FUZZ
@given(data=encoded)
def test_annotations(data):
    sample = {"__key__": "000007", "__url__": "fuzz.tar", "png": IMAGE, "json": data}
    for unit in ("auto", "m", "cm"):
        raises_only_named_errors(lambda: decode_sample(sample, unit), "fuzz.tar:000007")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("fuzz") / "shards", 2, per_shard=2, size=16)


@FUZZ
@given(content=st.builds(lambda value: json.dumps(value).encode(), manifest) | st.binary(max_size=40))
def test_manifests(shards, content):
    path = shards / "manifest.json"
    path.write_bytes(content)
    raises_only_named_errors(lambda: open_dataset([shards]), str(path))
    # generation's reader: the dataset folder it would resume (a manifest of other settings) or the manifest
    raises_only_named_errors(lambda: frames_to_render(shards, GenerateConfig(out=shards, nb_frames=2)), str(shards))
