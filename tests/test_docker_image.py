"""The CPU image run for real, offline (`docker/check-image.sh`): one-node generate -> train ->
model, and a SageMaker job killed with `docker kill` that resumes. Needs a Docker engine and the
image (`bash docker/build-cpu.sh` builds both base and image here; DOCKER_TEST_BUILD=1 makes this
test build it first); skipped with the reason otherwise. CI does not start an engine."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("DOCKER_TEST_IMAGE", "dope-stream:cpu")


def missing_engine() -> str | None:
    """Why no container can run here, or None."""
    if shutil.which("docker") is None:
        return "no docker command on PATH"
    info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        return f"no Docker engine running ({(info.stderr.strip().splitlines() or ['docker info failed'])[-1]})"
    return None


@pytest.fixture(scope="module")
def image() -> str:
    reason = missing_engine()
    if reason:
        pytest.skip(reason)
    if os.environ.get("DOCKER_TEST_BUILD") == "1":
        subprocess.run(["bash", str(REPO / "docker" / "build-cpu.sh"), IMAGE], check=True, timeout=3600)
    elif subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode != 0:
        pytest.skip(f"no {IMAGE} image: build it with `bash docker/build-cpu.sh` (or set DOCKER_TEST_BUILD=1)")
    return IMAGE


def test_image_trains_offline_and_a_killed_sagemaker_job_resumes(image, tmp_path):
    from trainer.checkpoint import load_model

    result = subprocess.run(
        ["bash", str(REPO / "docker" / "check-image.sh"), image, str(tmp_path)], capture_output=True, text=True, timeout=1800
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "check-image.sh: ok" in result.stdout
    # what the containers wrote loads here, with this checkout's code
    for model_file in (tmp_path / "data/out/model/model.pt", tmp_path / "opt_ml/model/model.pt"):
        _, meta = load_model(model_file, "cpu")
        assert meta.input_size == 64 and meta.cuboid is not None
