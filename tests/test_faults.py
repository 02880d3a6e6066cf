"""SIGKILL at random moments: generation (one and two workers, shards and folder), training and a
streamed run. After each kill no process of the run is left, the same command completes the job
and the result equals an uninterrupted run (see tests/faults.py; benchmarks/bench_faults.py runs
many kills). The moments are drawn from a seed printed on failure (DOPE_FAULT_SEED repeats one)."""

from __future__ import annotations

import os
import random

import pytest
from faults import kill_once, scenarios

SEED = int(os.environ.get("DOPE_FAULT_SEED", random.SystemRandom().randrange(2**32)))
# One kill each, covering one and two workers, shards and folder, training and the stream; the other
# scenarios and many kills are benchmarks/bench_faults.py's.
TESTED = ("generate-shards", "generate-folder-2-workers", "train", "stream")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("faults")


@pytest.mark.parametrize("name", TESTED)
def test_killed_run_leaves_no_process_and_resumes_to_the_same_result(work, name):
    scenario = scenarios(work)[name]
    reference = scenario.reference_in(work)
    result = kill_once(scenario, work, reference, random.Random(f"{SEED}:{name}"))
    where = f"DOPE_FAULT_SEED={SEED}, killed after {result.killed_after} of {scenario.total} files; log:\n{result.log}"
    assert not result.orphans, f"processes outlived the killed run: {result.orphans} ({where})"
    assert result.rerun_code == 0, where
    assert not result.differences, f"{result.differences} ({where})"
