"""benchmarks/gpu_check.sh, as far as a machine without a GPU can check it: it parses, stops at once
with one line without a GPU, and its dry run lists every step within the 8-minute budget."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
BUDGET_S = 8 * 60
STEPS = ("GPUs", "torch CUDA", "EGL renderer per actor", "raster actors, one per GPU", "path tracer (cuda_ad_rgb)",
         "training steps on CUDA", "dope train --stream")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def has_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return listing.returncode == 0 and listing.stdout.startswith("GPU ")


def test_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0


@pytest.mark.skipif(has_gpu(), reason="this machine has a GPU: the check would run for real")
def test_without_a_gpu_it_stops_with_one_line():
    result = run()
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no NVIDIA GPU" in lines[0], result.stderr


def test_dry_run_lists_every_step_within_the_budget():
    result = run("--dry-run")
    assert result.returncode == 0, result.stderr
    steps = re.findall(r"^== (.+) \(at most (\d+) s\): ", result.stdout, re.MULTILINE)
    assert [name for name, _ in steps] == list(STEPS)
    assert sum(int(limit) for _, limit in steps) <= BUDGET_S
    assert "--device cuda" in result.stdout and "cuda_ad_rgb" in result.stdout and "--gpu" in result.stdout


def test_unknown_option_is_one_line():
    result = run("--fast")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "--fast" in result.stderr
