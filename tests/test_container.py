"""The container entry point outside a container: a temporary folder laid out like /opt/ml.

SageMaker's contract, simulated: hyperparameters as JSON strings in input/config/hyperparameters.json,
channels under input/data/<name> (or SM_CHANNEL_<NAME>), the model in model/, checkpoints in
checkpoints/, a failure reason in output/failure. A spot interruption is a SIGKILL of the whole
process group; the restarted job must pick up both stages where they stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dope_stream.config import PACKAGE_ASSETS
from dope_app.container import Environment, collect_layers, main, plan_run, run_plan

REPO = Path(__file__).resolve().parents[1]
CRACKER_BOX = PACKAGE_ASSETS / "objects" / "003_cracker_box"

# Tiny generate-then-train job: 8 frames of 64x64 in 4 shards, 4 training steps of 2 images.
TINY_JOB = {
    "generator": "generate-then-train", "nb_frames": "8", "width": "64", "height": "64", "spp": "1",
    "nb_objects": "1", "nb_distractors": "0,1", "frames_per_shard": "2", "epochs": "1", "batch_size": "2",
    "image_size": "64", "stages": "1", "pretrained": "false", "loader_workers": "0", "save_every": "1",
    "val_fraction": "0", "amp": "false", "channels_last": "false",
}


def sagemaker_root(tmp_path: Path, hyperparameters: dict, obj_channel: bool = False) -> Path:
    root = tmp_path / "opt_ml"
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    if obj_channel:
        shutil.copytree(CRACKER_BOX, root / "input" / "data" / "obj" / "003_cracker_box")
    return root


def plan_for(root: Path, argv: list[str] | None = None, **variables: str):
    env = Environment.current({"DOPE_SM_ROOT": str(root), "DOPE_IMAGE_SIZE": "64", **variables})
    return plan_run(collect_layers(argv or [], env), env)


def test_sagemaker_strings_channels_and_precedence(tmp_path):
    root = sagemaker_root(
        tmp_path,
        {"nb_frames": "100", "nb_objects": "1,3", "augment": "false", "net": '"light"', "scale_range": "[0.8, 1.2]",
         "lr": "2e-4", "batch_size": "4", "seed": "7", "workers": "3", "backgrounds": "none", "image_size": "64",
         "sagemaker_region": '"eu-west-1"'},  # SageMaker's own names are not settings
        obj_channel=True,
    )
    training = tmp_path / "existing_dataset"
    training.mkdir()
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({"generator": "train-only", "nb_frames": 5, "spp": 16, "epochs": 3}))
    plan = plan_for(
        root, ["train", "--config", str(config), "--epochs", "9"],
        DOPE_BATCH_SIZE="8", DOPE_EPOCHS="4", SM_CHANNEL_TRAINING=str(training),
    )
    assert plan.container.generator == "train-only"  # YAML file
    assert plan.generate.spp == 16  # YAML file, not overridden
    assert plan.generate.nb_frames == 100  # hyperparameters beat the YAML file
    assert plan.generate.nb_objects == (1, 3) and plan.generate.backgrounds is None
    assert plan.train.augment is False and plan.train.scale_range == (0.8, 1.2) and plan.train.lr == 2e-4
    assert plan.train.batch_size == 8  # environment beats hyperparameters
    assert plan.train.epochs == 9  # options beat everything
    assert plan.generate.seed == plan.train.seed == 7
    assert plan.generate.workers == 3 and plan.train.workers == 2  # renderers vs loader_workers
    assert plan.generate.obj == [root / "input/data/obj/003_cracker_box/model.obj"]  # channel folder
    assert plan.train.data == [training]  # SM_CHANNEL_TRAINING
    assert plan.model_dir == root / "model" and plan.checkpoint_dir == root / "checkpoints"
    assert plan.generate.out == root / "checkpoints" / "dataset"
    assert plan.train.out == root / "checkpoints" / "train"


def test_every_key_has_one_meaning():
    """A key both stages know is routed on purpose (seed: both; out: the container's; the old `workers`:
    rendering); a new shared key, or a stage key equal to a container key, needs a decision here first."""
    from dope_stream.config import GenerateConfig
    from trainer.config import TrainConfig
    from dope_app.container import ContainerConfig

    generate_keys, train_keys = set(GenerateConfig.model_fields), set(TrainConfig.model_fields)
    assert generate_keys & train_keys == {"seed", "out"}
    assert not set(ContainerConfig.model_fields) & (generate_keys | train_keys)


def test_paths_outside_sagemaker_and_the_streaming_plan(tmp_path):
    bare = tmp_path / "no_opt_ml"  # no hyperparameters.json: not a SageMaker job
    plan = plan_for(bare, ["--generator", "streaming", "--ray=head:6379", "--model-dir", str(tmp_path / "m")])
    assert plan.model_dir == tmp_path / "m" and plan.checkpoint_dir == Path("out/checkpoints")
    assert plan.generate.ray == "head:6379" and plan.train.data == []
    assert plan.train.stream == plan.generate  # the generate section itself, no file in between
    assert plan_for(bare, SM_MODEL_DIR=str(tmp_path / "sm_model")).model_dir == tmp_path / "sm_model"
    generate_then_train = plan_for(bare, DOPE_DATASET=str(tmp_path / "frames"))
    assert generate_then_train.train.data == [tmp_path / "frames"] == [generate_then_train.generate.out]
    job = tmp_path / "job.yaml"
    job.write_text("nb_frames: 12\n")
    # DOPE_CONFIG names the YAML file; another tool's DOPE_ variable is not a setting
    assert plan_for(bare, DOPE_CONFIG=str(job), DOPE_MITSUBA_VARIANT="scalar_rgb").generate.nb_frames == 12


def test_streaming_hands_the_generate_settings_to_the_trainer(tmp_path, monkeypatch):
    """The streaming trainer gets a stream config equal to the container's generate settings."""
    received = {}

    class TrainerReached(Exception):
        pass

    def trainer_stand_in(config):
        received.update(config=config, stream=config.stream)
        raise TrainerReached

    monkeypatch.setattr("trainer.loop.train", trainer_stand_in)
    checkpoints = tmp_path / "checkpoints"
    plan = plan_for(
        tmp_path / "no_opt_ml",
        ["--generator", "streaming", "--ray", "local", "--nb_frames", "40", "--nb_objects", "2,4",
         "--checkpoint_dir", str(checkpoints), "--processes", "1"],
    )
    with pytest.raises(TrainerReached):
        run_plan(plan)
    assert received["stream"] == plan.generate and received["stream"].out == checkpoints / "dataset"
    assert received["stream"].ray == "local" and received["stream"].nb_objects == (2, 4)
    assert not (checkpoints / "stream.yaml").exists() and received["config"].resume is False


@pytest.mark.parametrize(
    ("hyperparameters", "variables", "argv", "expected"),
    [
        ({"nb_frame": "10"}, {}, [], "hyperparameters.json: unknown key 'nb_frame' (did you mean 'nb_frames'?)"),
        ({"nb_frames": "many"}, {}, [], "hyperparameters.json: option 'nb_frames': Input should be a valid integer"),
        ({"nb_objects": "3,1"}, {}, [], "option 'nb_objects': range '3,1' has its minimum above its maximum"),
        ({"generator": "render"}, {}, [], "hyperparameters.json: option 'generator': Input should be 'generate-only'"),
        ({}, {"DOPE_EPOCH": "3"}, [], "environment variable DOPE_EPOCH: unknown key 'epoch' (did you mean 'epochs'?)"),
        ({}, {"DOPE_BATCH_SIZE": "0"}, [], "environment variable DOPE_BATCH_SIZE: option 'batch_size'"),
        ({}, {}, ["--out", "x"], "command line: key 'out' is set by the container"),
        ({"generator": "train-only"}, {}, [], "generator train-only: no training data"),
        ({}, {}, ["--data", "d1"], "command line: 'data' is for generator train-only"),
        ({}, {}, ["stray"], "unexpected argument 'stray'"),
    ],
)
def test_bad_settings_are_one_line_with_exit_code_2(tmp_path, capsys, hyperparameters, variables, argv, expected):
    root = sagemaker_root(tmp_path, {"image_size": "64", **hyperparameters})
    assert main(argv, {"DOPE_SM_ROOT": str(root), **variables}) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and expected in error, error
    assert (root / "output" / "failure").read_text().strip() in error  # SageMaker's failure reason


def test_unreadable_hyperparameters_and_empty_obj_channel(tmp_path, capsys):
    root = sagemaker_root(tmp_path, {})
    (root / "input" / "config" / "hyperparameters.json").write_text("{nb_frames: 3")
    assert main([], {"DOPE_SM_ROOT": str(root)}) == 2
    assert "hyperparameters.json: not valid JSON" in capsys.readouterr().err
    (root / "input" / "config" / "hyperparameters.json").write_text("{}")
    (root / "input" / "data" / "obj").mkdir(parents=True)
    assert main([], {"DOPE_SM_ROOT": str(root)}) == 2
    assert "channel 'obj': folder" in capsys.readouterr().err


def test_bad_hyperparameter_in_a_fresh_process_has_no_traceback(tmp_path):
    root = sagemaker_root(tmp_path, {"epochs": "1.5"})
    result = subprocess.run(
        [sys.executable, "-m", "dope_app.container", "train"], cwd=REPO, capture_output=True, text=True,
        env={**os.environ, "DOPE_SM_ROOT": str(root)}, timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0
    assert "hyperparameters.json: option 'epochs'" in result.stderr


# --- a simulated SageMaker spot job: killed while generating, killed while training, finished ---------


def start_job(root: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dope_app.container", "train"], cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT,
        env={**os.environ, "DOPE_SM_ROOT": str(root)}, start_new_session=True,
    )


def wait_for(ready, log: Path, job: subprocess.Popen | None = None, timeout: float = 300) -> None:
    """Poll `ready()`; fail at once if `job` ends first."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert job is None or job.poll() is None, f"job ended (rc {job.returncode}):\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, "timed out waiting for the job"
        time.sleep(0.01)


def process_group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def kill_when(job: subprocess.Popen, ready, log: Path) -> None:
    """SIGKILL the job's whole process group (renderer children too) as soon as `ready()` holds."""
    wait_for(ready, log, job)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()


def test_spot_interrupted_job_resumes_generation_and_training(tmp_path):
    from trainer.checkpoint import latest_checkpoint, load_model, read_checkpoint

    root = sagemaker_root(tmp_path, TINY_JOB, obj_channel=True)
    dataset, run_dir = root / "checkpoints" / "dataset", root / "checkpoints" / "train"
    shards = lambda: sorted(dataset.glob("shard-*.tar"))  # noqa: E731

    # run 1: stopped the way `docker stop` and SageMaker stop a container, SIGTERM to its main process
    log1 = tmp_path / "run1.log"
    job = start_job(root, log1)
    wait_for(lambda: len(shards()) >= 1, log1, job)
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=60) == 128 + signal.SIGTERM
    wait_for(lambda: not process_group_alive(job.pid), log1, timeout=30)  # the renderer child stopped too
    first_shards = {p.name: p.stat().st_mtime_ns for p in shards()}
    assert 1 <= len(first_shards) < 4, "the kill came after the whole dataset was written"

    log2 = tmp_path / "run2.log"
    kill_when(start_job(root, log2), lambda: latest_checkpoint(run_dir) is not None, log2)
    assert len(shards()) == 4 and json.loads((dataset / "manifest.json").read_text())["complete"]
    assert {p.name: p.stat().st_mtime_ns for p in shards() if p.name in first_shards} == first_shards  # not re-rendered
    interrupted_at = read_checkpoint(latest_checkpoint(run_dir))["step"]
    assert 1 <= interrupted_at < 4, "the kill came after training finished"
    assert not (root / "model" / "model.pt").exists()

    log3 = tmp_path / "run3.log"
    job = start_job(root, log3)
    assert job.wait(timeout=300) == 0, log3.read_text()[-3000:]
    output = log3.read_text()
    assert "already holds all 8 frames" in output
    assert f"(step {interrupted_at}, epoch 0)" in output  # trainer.loop's "resumed from ..." line
    model, meta = load_model(root / "model" / "model.pt")
    assert meta.class_name == "003_cracker_box" and meta.input_size == 64 and meta.cuboid is not None
    assert read_checkpoint(root / "model" / "model.pt")["step"] == 4
    assert yaml.safe_load((root / "model" / "train.yaml").read_text())["batch_size"] == 2
    assert not (root / "output" / "failure").exists()


def test_train_only_on_a_training_channel_in_two_torchrun_processes(tmp_path):
    from toy_dataset import BOX, write_folder

    from trainer.checkpoint import load_model, read_checkpoint

    settings = {key: TINY_JOB[key] for key in TINY_JOB if key not in ("nb_frames", "nb_objects", "nb_distractors")}
    root = sagemaker_root(tmp_path, {**settings, "generator": "train-only", "processes": "2"})
    write_folder(root / "input" / "data" / "training", 8, size=64)
    assert main([], {**os.environ, "DOPE_SM_ROOT": str(root)}) == 0
    model_file = root / "model" / "model.pt"
    # 8 frames, 2 ranks of 4 frames, batches of 2: each rank takes 2 steps (one process would take 4)
    assert read_checkpoint(model_file)["step"] == 2
    _, meta = load_model(model_file)
    assert meta.class_name == "toy_box" and meta.cuboid.to_dict() == pytest.approx(BOX.to_dict())
    assert yaml.safe_load((root / "checkpoints" / "train.yaml").read_text())["data"] == [str(root / "input/data/training")]


def test_backend_variables_and_renamed_keys_reach_the_generate_section(tmp_path, caplog):
    bare = tmp_path / "no_opt_ml"
    plan = plan_for(bare, ["--workers", "2", "--pathtrace", '{"threads": 1}'], DOPE_MITSUBA_VARIANT="scalar_rgb")
    assert plan.generate.render_workers == 2 and "key 'workers' is deprecated" in caplog.text
    assert plan.generate.pathtrace.variant == "scalar_rgb" and plan.generate.pathtrace.threads == 1
    assert plan.tree.generate is plan.generate and plan.tree.train is plan.train
    with pytest.raises(Exception, match="unknown key 'pathtrace.thread' \\(did you mean 'threads'\\?\\)"):
        plan_for(bare, ["--pathtrace", '{"thread": 1}'])
