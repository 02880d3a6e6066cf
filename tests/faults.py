"""Kill-and-resume scenarios shared by tests/test_faults.py and benchmarks/bench_faults.py.

A scenario runs one `dope` command in a subprocess, SIGKILLs only its main process at a random
moment while it works (once a random number of its output files are finished, plus a random delay),
checks that no process it started outlives it, runs the same command again and compares the result
with an uninterrupted run made once per scenario. Every process of a run carries the environment
variable TAG_VARIABLE, which is how survivors are found (children inherit the environment).
"""

from __future__ import annotations

import filecmp
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dope_stream.processes import processes_with_environment
from dope_stream.writers import RUN_ONLY_OPTIONS

TAG_VARIABLE = "DOPE_FAULT_TAG"
REPOSITORY = Path(__file__).resolve().parents[1]
EXIT_GRACE_S = 15.0  # how long the children of a killed process may take to notice and exit
RUN_TIMEOUT_S = 300.0


def dope_command(*options: str) -> list[str]:
    return [sys.executable, "-m", "dope_app.cli", *options]


def survivors(tag: str, grace_s: float = EXIT_GRACE_S) -> list[str]:
    """Processes still tagged after `grace_s` (their command lines); they are then killed, one by one."""
    deadline = time.monotonic() + grace_s
    while (left := processes_with_environment(TAG_VARIABLE, tag)) and time.monotonic() < deadline:
        time.sleep(0.2)
    described = []
    for pid in left:
        try:
            command_line = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            described.append(f"{pid} {command_line[:160]}")
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
    return described


@dataclass
class Scenario:
    """One command that is killed and re-run. `finished(out)` counts its finished output files."""

    name: str
    command: Callable[[Path], list[str]]
    finished: Callable[[Path], int]
    total: int  # finished files of a complete run
    reference_name: str  # scenarios with the same reference share it
    reference: Callable[[Path], None]  # makes the uninterrupted result in the given folder
    compare: Callable[[Path, Path], list[str]]  # (result, reference) -> differences
    prepare: Callable[[Path], None] = lambda work: None  # inputs the command needs, made once

    def reference_folder(self, work: Path) -> Path:
        return work / f"reference-{self.reference_name}"

    def reference_in(self, work: Path) -> Path:
        """The uninterrupted result (made on first use, with the inputs), under `work`."""
        folder = self.reference_folder(work)
        if not (work / f"{folder.name}.done").exists():
            self.prepare(work)
            self.reference(folder)
            (work / f"{folder.name}.done").touch()
        return folder


@dataclass
class KillResult:
    scenario: str
    killed_after: int  # finished files when the kill came (-1: the run ended first)
    orphans: list[str] = field(default_factory=list)
    rerun_code: int = 0
    differences: list[str] = field(default_factory=list)
    log: str = ""

    @property
    def identical(self) -> bool:
        return self.killed_after >= 0 and not self.orphans and self.rerun_code == 0 and not self.differences


def run_tagged(command: list[str], tag: str, log: Path) -> subprocess.Popen:
    env = dict(os.environ, **{TAG_VARIABLE: tag, "PYTHONPATH": str(REPOSITORY)})
    with open(log, "ab") as stream:
        return subprocess.Popen(command, env=env, stdout=stream, stderr=subprocess.STDOUT, cwd=REPOSITORY)


def kill_once(scenario: Scenario, work: Path, reference: Path, rng: random.Random) -> KillResult:
    """Run, SIGKILL the main process at a random moment, check for survivors, re-run, compare."""
    out = work / f"{scenario.name}-{rng.randrange(10**9)}"
    out.mkdir(parents=True)
    tag = out.name
    log = out.parent / f"{out.name}.log"
    command = scenario.command(out)
    target, delay = rng.randrange(scenario.total), rng.uniform(0.0, 0.5)
    process = run_tagged(command, tag, log)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while process.poll() is None and scenario.finished(out) < target and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(delay)
    killed_after = scenario.finished(out) if process.poll() is None else -1
    process.send_signal(signal.SIGKILL)
    process.wait()
    result = KillResult(scenario.name, killed_after, orphans=survivors(tag))
    rerun = run_tagged(command, tag, log)
    result.rerun_code = rerun.wait(RUN_TIMEOUT_S)
    result.orphans += survivors(tag, grace_s=5.0)
    result.differences = scenario.compare(out, reference)
    result.log = log.read_text(errors="replace")[-3000:]
    return result


# --- comparisons ----------------------------------------------------------------------------------


def same_files(result: Path, reference: Path, pattern: str) -> list[str]:
    """Files matching `pattern` that differ, or exist on one side only."""
    mine = {p.relative_to(result) for p in result.rglob(pattern)}
    theirs = {p.relative_to(reference) for p in reference.rglob(pattern)}
    differences = [f"only in one run: {name}" for name in sorted(mine ^ theirs)]
    differences += [f"differs: {name}" for name in sorted(mine & theirs) if not filecmp.cmp(result / name, reference / name, shallow=False)]
    return differences if mine else ["no files " + pattern]


def same_dataset(result: Path, reference: Path) -> list[str]:
    """Same frames (bytes) and the same manifest apart from where the dataset lives."""
    differences = [d for pattern in ("*.tar", "*.jpg", "*.png", "[0-9]*.json") for d in same_files(result, reference, pattern)
                   if not d.startswith("no files")]
    manifests = [json.loads((folder / "manifest.json").read_text()) for folder in (result, reference)]
    for manifest in manifests:  # options that say how a dataset was made, not what it holds
        manifest["config"] = {k: v for k, v in manifest["config"].items() if k not in RUN_ONLY_OPTIONS}
    if manifests[0] != manifests[1]:
        differences.append("manifest.json differs")
    if list(result.glob(".*")) or list(result.glob("*.tmp")):
        differences.append(f"temporary files left: {sorted(p.name for p in result.glob('.*'))}")
    return differences or ([] if any(result.iterdir()) else ["empty dataset"])


# --- the scenarios --------------------------------------------------------------------------------

# Small enough that a scenario (reference, killed run, re-run) takes seconds of work, not minutes; big
# enough that every command writes several files and checkpoints, so a kill lands between them.
FRAMES, FRAMES_PER_SHARD, SIZE, BATCH = 12, 3, 32, 4
GENERATE_OPTIONS = (
    "--nb_frames", str(FRAMES), "--width", str(SIZE), "--height", str(SIZE), "--nb_objects", "1",
    "--nb_distractors", "1,2", "--frames_per_shard", str(FRAMES_PER_SHARD), "--seed", "3", "--scene", "flying",
)
EPOCHS = 2
TRAIN_STEPS = EPOCHS * FRAMES // BATCH


def _generate_command(layout: str, workers: int) -> Callable[[Path], list[str]]:
    return lambda out: dope_command("generate", *GENERATE_OPTIONS, "--layout", layout, "--render_workers", str(workers), "--out", str(out))


def _run_to_end(command: list[str], folder: Path) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tag = f"reference-{folder.name}-{os.getpid()}"
    code = run_tagged(command, tag, folder.parent / f"{folder.name}.log").wait(RUN_TIMEOUT_S)
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({code}); see {folder.parent / folder.name}.log")


def _count(pattern: str, under: str = "") -> Callable[[Path], int]:
    return lambda out: len(list((out / under).glob(pattern)))


def _latest_step(out: Path) -> int:
    steps = [int(p.stem.removeprefix("step-")) for p in (out / "checkpoints").glob("step-*.pt")]
    return max(steps, default=0)


def _same_final_model(result: Path, reference: Path) -> list[str]:
    import torch

    def final(run: Path) -> dict:
        found = sorted((run / "checkpoints").glob("step-*.pt"))
        return torch.load(found[-1], weights_only=True) if found else {}

    mine, theirs = final(result), final(reference)
    if not mine:
        return ["no checkpoint"]
    differences = [f"{key} differs" for key in ("step", "epoch", "samples_done") if mine[key] != theirs[key]]
    differences += [f"weights {name} differ" for name, tensor in theirs["model"].items() if not torch.equal(tensor, mine["model"][name])]
    if list((result / "checkpoints").glob(".*")):
        differences.append("checkpoint temporaries left")
    return differences


def _train_command(data: Path) -> Callable[[Path], list[str]]:
    return lambda out: dope_command(
        "train", "--data", str(data), "--net", "light", "--stages", "1", "--epochs", str(EPOCHS),
        "--batch_size", str(BATCH), "--image_size", str(SIZE), "--loader_workers", "2", "--save_every", "2", "--keep_last", "2",
        "--val_fraction", "0", "--warmup_steps", "2", "--seed", "1", "--threads", "1", "--resume", "--out", str(out),
    )


def _stream_yaml(out: Path) -> Path:
    options = dict(zip(GENERATE_OPTIONS[::2], GENERATE_OPTIONS[1::2]))
    lines = [f"{key.removeprefix('--')}: '{value}'" for key, value in options.items()] + [f"out: '{out / 'data'}'", "render_workers: 1"]
    path = out / "stream.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _stream_command(out: Path) -> list[str]:
    return dope_command(
        "train", "--stream", str(_stream_yaml(out)), "--net", "light", "--stages", "1", "--epochs", str(EPOCHS),
        "--batch_size", str(BATCH), "--image_size", str(SIZE), "--loader_workers", "0", "--save_every", "2", "--resume",
        "--out", str(out / "run"),
    )


def _stream_result(result: Path, reference: Path) -> list[str]:
    differences = same_files(result / "data", reference, "*.tar")
    return differences + ([] if _latest_step(result / "run") == TRAIN_STEPS else ["training did not finish"])


def scenarios(work: Path) -> dict[str, Scenario]:
    """name -> Scenario; `work` holds the reference runs (the shards reference is also the training data)."""
    shards = FRAMES // FRAMES_PER_SHARD
    shards_reference = lambda folder: _run_to_end(_generate_command("shards", 1)(folder), folder)  # noqa: E731
    folder_reference = lambda folder: _run_to_end(_generate_command("folder", 1)(folder), folder)  # noqa: E731
    generate_shards = Scenario("generate-shards", _generate_command("shards", 1), _count("shard-*.tar"), shards, "shards",
                               shards_reference, same_dataset)
    train = _train_command(generate_shards.reference_folder(work))
    listed = [
        generate_shards,
        Scenario("generate-shards-2-workers", _generate_command("shards", 2), _count("shard-*.tar"), shards, "shards",
                 shards_reference, same_dataset),
        Scenario("generate-folder-2-workers", _generate_command("folder", 2), _count("[0-9]*.json"), FRAMES, "folder",
                 folder_reference, same_dataset),
        Scenario("train", train, _latest_step, TRAIN_STEPS, "train", lambda folder: _run_to_end(train(folder), folder),
                 _same_final_model, prepare=generate_shards.reference_in),
        Scenario("stream", _stream_command, _count("shard-*.tar", "data"), shards, "shards", shards_reference, _stream_result),
    ]
    return {scenario.name: scenario for scenario in listed}
