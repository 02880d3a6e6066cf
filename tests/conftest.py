"""Shared fixtures: tiny generate configs, a generated dataset, exact box meshes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
# Importing triton (torch._dynamo pulls it in: optimisers, ONNX export) after Mesa's EGL has been
# loaded by an in-process render segfaults; imported first, both coexist in one test session.
import torch._dynamo  # noqa: F401

from dope_stream.assets import AssetLibrary, MeshAsset, build_asset_library
from dope_stream.config import GenerateConfig


def tiny_generate_config(out: Path, **overrides) -> GenerateConfig:
    """A cheap config on the built-in assets: 64x64 frames, few objects, small shards; flying scenes
    (the generator's mechanics without physics: tabletop scenes have tests of their own)."""
    values = dict(
        scene="flying", out=out, nb_frames=6, width=64, height=64, nb_objects=(1, 2), nb_distractors=(1, 3), frames_per_shard=2, spp=1
    )
    values.update(overrides)
    return GenerateConfig(**values)


@pytest.fixture(scope="session")
def default_assets() -> AssetLibrary:
    """The built-in asset library (loaded once per test session)."""
    return build_asset_library(GenerateConfig())


@pytest.fixture(scope="session")
def generated_shards(tmp_path_factory) -> Path:
    """A small shard dataset made by `dope generate` (6 frames of 64x64 in 3 shards)."""
    from dope_stream.generate import generate

    return generate(tiny_generate_config(tmp_path_factory.mktemp("generated") / "shards"))


def box_mesh(key: str, extent: tuple[float, float, float], offset: tuple[float, float, float] = (0, 0, 0)) -> MeshAsset:
    """An exact box (AABB = the box) whose model origin is `-offset` from its centre, plain white."""
    import trimesh

    mesh = trimesh.creation.box(extents=extent)
    mesh.unmerge_vertices()
    vertices = np.asarray(mesh.vertices) + np.asarray(offset)
    return MeshAsset(
        key=key,
        vertices=vertices.astype(np.float32),
        normals=np.asarray(mesh.vertex_normals, dtype=np.float32),
        faces=np.asarray(mesh.faces, dtype=np.uint32),
    )
