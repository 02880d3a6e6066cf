"""Container entry point: `python -m dope_app.container` (what the images in docker/ run).

One program for every way the images are used: generate a dataset, train on one, both in turn, or
train on frames rendered live by Ray actors (`generator`: generate-only, train-only,
generate-then-train, streaming). It composes the library (`dope_stream.generate.generate`,
`trainer.loop.train`); it only decides where things go and reads the settings.

Settings are the keys of `ContainerConfig` plus every `GenerateConfig` and `TrainConfig` key (the
seed's knobs `obj`, `spp`, `nb_objects`, `nb_distractors`, `nb_frames`, `epochs`, `batch_size` among
them), flat: the container routes each to its section of the configuration tree
(`dope_app.config.DopeConfig`). `render_workers` is the rendering processes (`workers`, its old
name, still works), `loader_workers` the training data-loading processes. `seed` sets both stages.
`out`, `resume` and `stream` are the container's to set: with `generator: streaming` the trainer's
`stream` is the generate section itself. `pathtrace` takes a mapping (`{"threads": 2}`); the
variables DOPE_MITSUBA_VARIANT and DOPE_PATHTRACE_THREADS fill it when unset. Sources, lowest
precedence first:
  1. data channels: `SM_CHANNEL_<NAME>` or, as SageMaker mounts them, `ROOT/input/data/<name>`:
     `training` -> data, `validation` -> val_data, `obj` -> obj (every mesh in it), `hdri`,
     `backgrounds`, `distractors`;
  2. a YAML file: `--config FILE` or `DOPE_CONFIG=FILE`;
  3. SageMaker hyperparameters, `ROOT/input/config/hyperparameters.json` (every value a string);
  4. environment variables `DOPE_<KEY>` (`DOPE_NB_FRAMES=100`);
  5. options `--key value` (`--nb_frames 100`, `--nb-frames=100`).
Text values are read as the YAML/CLI read them: "100", "true", "1,3" (a range), "a.obj,b.obj" (a list),
"none"; JSON-quoted strings and lists from SageMaker's framework estimators ("\"x\"", "[1, 3]") too.

ROOT is `DOPE_SM_ROOT` (default /opt/ml). When `ROOT/input/config/hyperparameters.json` exists the run
is a SageMaker job: the model goes to `SM_MODEL_DIR` or `ROOT/model`, and everything a restart needs
(generated frames, training checkpoints) to `ROOT/checkpoints`, which SageMaker syncs with S3, so a
spot instance that is stopped and restarted resumes both stages. Elsewhere the defaults are
out/model and out/checkpoints. A bad setting is one line on stderr (and, under SageMaker, in
`ROOT/output/failure`, which SageMaker shows as the failure reason), exit code 2.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import ValidationError

from dope_stream.exchange import write_atomically
from dope_stream.assets import MESH_SUFFIXES, list_files
from dope_stream.config import ConfigModel, GenerateConfig, describe_validation_error, did_you_mean, read_yaml
from dope_stream.errors import DopeError
from trainer.config import TrainConfig

from .config import ContainerConfig, DopeConfig
from .environment import BACKEND_VARIABLES, with_backend_environment

log = logging.getLogger(__name__)

ROOT_ENV = "DOPE_SM_ROOT"
CONFIG_ENV = "DOPE_CONFIG"
ENV_PREFIX = "DOPE_"
DEFAULT_ROOT = Path("/opt/ml")
HYPERPARAMETERS = Path("input/config/hyperparameters.json")
CHANNELS_DIR = Path("input/data")
FAILURE_FILE = Path("output/failure")
SAGEMAKER_PREFIX = "sagemaker_"
MODEL_FILE = "model.pt"
# SageMaker channel name -> the setting it provides
CHANNEL_SETTINGS = {
    "training": "data", "validation": "val_data", "obj": "obj", "hdri": "hdri",
    "backgrounds": "backgrounds", "distractors": "distractors",
}
# Keys of the stage configs that the container sets itself, and why.
MANAGED_KEYS = {
    "out": "set dataset, checkpoint_dir or model_dir instead",
    "resume": "a restart always resumes from checkpoint_dir",
    "stream": "set generator: streaming instead",
}


@dataclass
class Layer:
    """Settings from one source; `source` names it in error messages."""

    source: str
    values: dict[str, Any]


@dataclass
class Environment:
    """Where this run is: the /opt/ml-like root, the process environment and whether SageMaker runs it."""

    root: Path
    variables: Mapping[str, str]

    @property
    def sagemaker(self) -> bool:
        return (self.root / HYPERPARAMETERS).is_file()

    @staticmethod
    def current(variables: Mapping[str, str] | None = None) -> "Environment":
        variables = os.environ if variables is None else variables
        return Environment(Path(variables.get(ROOT_ENV, str(DEFAULT_ROOT))), variables)


@dataclass
class RunPlan:
    """The validated settings of each stage, as one configuration tree, and where files go."""

    tree: DopeConfig
    dataset: Path
    checkpoint_dir: Path
    model_dir: Path

    @property
    def container(self) -> ContainerConfig:
        return self.tree.container

    @property
    def generate(self) -> GenerateConfig:
        return self.tree.generate

    @property
    def train(self) -> TrainConfig:
        return self.tree.train


# --- reading the settings -------------------------------------------------------------------------

STAGE_MODELS: tuple[type[ConfigModel], ...] = (ContainerConfig, GenerateConfig, TrainConfig)
# The old name of render_workers (TrainConfig's `workers`, loader_workers' old name, was never a
# container key: the container always called that loader_workers).
RENAMED_KEYS = {"workers": "render_workers"}


def known_keys() -> list[str]:
    keys = {key for model in STAGE_MODELS for key in model.model_fields}
    return sorted(keys - set(MANAGED_KEYS))


def check_keys(layer: Layer) -> None:
    """One DopeError naming the source for the first key no stage knows or the container owns."""
    for key in sorted(layer.values):
        if key in MANAGED_KEYS:
            raise DopeError(f"{layer.source}: key '{key}' is set by the container ({MANAGED_KEYS[key]})")
        if key not in known_keys() and key not in RENAMED_KEYS:
            raise DopeError(f"{layer.source}: unknown key '{key}'{did_you_mean(key, known_keys(), list_when_none=False)}")


def renamed(layer: Layer) -> Layer:
    """The layer with old key names replaced by the new ones (with a deprecation warning)."""
    values = dict(layer.values)
    for old, new in RENAMED_KEYS.items():
        if old in values:
            if new in values:
                raise DopeError(f"{layer.source}: '{old}' and '{new}' are the same setting ('{old}' is its old name): give one")
            log.warning("%s: key '%s' is deprecated: it is now '%s'", layer.source, old, new)
            values[new] = values.pop(old)
    return Layer(layer.source, values)


def decode_text(value: str) -> Any:
    """A setting given as text (hyperparameter, environment, option) -> what pydantic validates.

    Numbers, booleans and "a,b" ranges/lists stay text: the config models parse those. JSON-encoded
    strings and lists (SageMaker framework estimators json.dumps every value) are decoded.
    """
    text = value.strip()
    if text.lower() in ("none", "null"):
        return None
    if text[:1] in ('"', "[", "{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return value
    return value


def read_hyperparameters(env: Environment) -> Layer | None:
    path = env.root / HYPERPARAMETERS
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DopeError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise DopeError(f"{path}: must hold an object of hyperparameter names to values")
    # sagemaker_* names are SageMaker's own (its SDK adds them for some estimators), not settings.
    values = {
        key: decode_text(v) if isinstance(v, str) else v for key, v in data.items() if not key.startswith(SAGEMAKER_PREFIX)
    }
    return Layer(str(path), values)


def read_environment(env: Environment) -> list[Layer]:
    """DOPE_<KEY> variables, one layer each so an error names the variable.

    A DOPE_ variable that is not a setting is someone else's unless its name is close to a setting's:
    then it is taken as a misspelt setting, so that it fails loudly. The backend variables
    (DOPE_MITSUBA_VARIANT) are read by `with_backend_environment`.
    """
    layers = []
    for name, value in sorted(env.variables.items()):
        key = name.removeprefix(ENV_PREFIX).lower()
        if name in (ROOT_ENV, CONFIG_ENV, *BACKEND_VARIABLES) or not name.startswith(ENV_PREFIX):
            continue
        if key in known_keys() or did_you_mean(key, known_keys(), list_when_none=False):
            layers.append(Layer(f"environment variable {name}", {key: decode_text(value)}))
    return layers


def read_channels(env: Environment) -> Layer:
    """Data channels: SM_CHANNEL_<NAME> variables, else folders under ROOT/input/data."""
    values: dict[str, Any] = {}
    for channel, key in CHANNEL_SETTINGS.items():
        folder = env.variables.get(f"SM_CHANNEL_{channel.upper()}")
        if folder is None and (env.root / CHANNELS_DIR / channel).is_dir():
            folder = str(env.root / CHANNELS_DIR / channel)
        if folder is None:
            continue
        if key == "obj":
            values[key] = list_files(Path(folder), MESH_SUFFIXES, "target meshes", f"channel '{channel}'")
        elif key in ("data", "val_data"):
            values[key] = [Path(folder)]
        else:
            values[key] = Path(folder)
    return Layer("data channels", values)


def parse_options(argv: list[str]) -> tuple[Path | None, Layer]:
    """`[train] [--config FILE] [--key value ...]` -> (config file, options layer).

    SageMaker starts a training image with the single argument `train`: it is accepted and ignored.
    `--key` with several values gives a list; `--key` alone means true.
    """
    args = argv[1:] if argv[:1] == ["train"] else list(argv)
    values: dict[str, Any] = {}
    key: str | None = None
    for arg in args:
        if arg.startswith("--"):
            key, _, inline = arg[2:].partition("=")
            key = key.replace("-", "_")
            values[key] = [inline] if inline else []
        elif key is None:
            raise DopeError(f"unexpected argument '{arg}' (options are --key value)")
        else:
            values[key].append(arg)
    config = values.pop("config", None)
    if config is not None and len(config) != 1:
        raise DopeError("option '--config': give one YAML file")
    parsed = {k: True if not v else decode_text(v[0]) if len(v) == 1 else v for k, v in values.items()}
    return (Path(config[0]) if config else None), Layer("command line", parsed)


def collect_layers(argv: list[str], env: Environment) -> list[Layer]:
    """Every source of settings, lowest precedence first, each checked for unknown keys."""
    config_file, options = parse_options(argv)
    config_file = config_file or (Path(env.variables[CONFIG_ENV]) if env.variables.get(CONFIG_ENV) else None)
    layers = [read_channels(env)]
    if config_file is not None:
        layers.append(Layer(str(config_file), read_yaml(config_file)))
    hyperparameters = read_hyperparameters(env)
    if hyperparameters is not None:
        layers.append(hyperparameters)
    layers += read_environment(env) + [options]
    for layer in layers:
        check_keys(layer)
    return [renamed(layer) for layer in layers]


def validated(model: type[ConfigModel], values: dict[str, Any], origin: dict[str, str]) -> Any:
    """`model(**values)`; an invalid value is one DopeError naming the source that gave it."""
    try:
        return model(**values)
    except ValidationError as err:
        location = err.errors()[0]["loc"]
        source = origin.get(str(location[0]), "settings") if location else "settings"
        raise DopeError(f"{source}: {describe_validation_error(err, model)}") from None


def plan_run(layers: list[Layer], env: Environment) -> RunPlan:
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for layer in layers:
        values.update(layer.values)
        origin.update(dict.fromkeys(layer.values, layer.source))
    def pick(model: type[ConfigModel]) -> dict[str, Any]:
        return {key: value for key, value in values.items() if key in model.model_fields}

    container = validated(ContainerConfig, pick(ContainerConfig), origin)
    checkpoint_dir = container.checkpoint_dir or (env.root / "checkpoints" if env.sagemaker else Path("out/checkpoints"))
    model_dir = container.model_dir or Path(
        env.variables.get("SM_MODEL_DIR") or (env.root / "model" if env.sagemaker else "out/model")
    )
    dataset = container.dataset or checkpoint_dir / "dataset"
    generate = validated(GenerateConfig, {**pick(GenerateConfig), "out": dataset}, origin)
    generate = with_backend_environment(generate, env.variables)
    train_values = {**pick(TrainConfig), "out": checkpoint_dir / "train"}
    if container.generator == "train-only":
        if not train_values.get("data"):
            raise DopeError("generator train-only: no training data (set 'data' or give a 'training' channel)")
    elif train_values.get("data"):
        raise DopeError(f"{origin['data']}: 'data' is for generator train-only (generator is {container.generator})")
    elif container.generator != "streaming":
        train_values["data"] = [dataset]
    else:
        train_values["stream"] = generate
    train = validated(TrainConfig, train_values, origin)
    return RunPlan(DopeConfig(container=container, generate=generate, train=train), dataset, checkpoint_dir, model_dir)


# --- running --------------------------------------------------------------------------------------


def write_text_atomic(path: Path, text: str) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(text))


def run_plan(plan: RunPlan) -> Path | None:
    """Run the stages of `plan.container.generator`; returns the model file (None for generate-only)."""
    generator = plan.container.generator
    log.info("container: %s; frames in %s, checkpoints in %s, model to %s", generator, plan.dataset, plan.checkpoint_dir, plan.model_dir)
    if generator == "generate-only":
        generate_here(plan.generate)
        return None
    if generator == "generate-then-train":
        generate_in_child(plan.generate)
    return train_and_export(plan)


def generate_here(config: GenerateConfig) -> None:
    """Render the frames missing from `config.out` (a restart resumes where the last run stopped)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # a spawned child starts unconfigured
    from dope_stream.generate import generate

    generate(config)


def generate_in_child(config: GenerateConfig) -> None:
    """`generate_here` in a spawned process, when this process trains next.

    Why: Mesa's llvmpipe (the EGL renderer) and Triton (imported by torch's optimisers) each load
    their own LLVM; loading Triton after an llvmpipe context crashed the process. A child keeps the
    GL state out of the training process. Its DopeError comes back here as itself.
    """
    import multiprocessing

    # Pool, not ProcessPoolExecutor: leaving the block early (SIGTERM) terminates the child
    # instead of waiting for it to render everything.
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        pool.apply(generate_here, (config,))


def train_and_export(plan: RunPlan) -> Path:
    from trainer.checkpoint import latest_checkpoint

    train_config = plan.train.model_copy(update={"resume": latest_checkpoint(plan.train.out) is not None})
    processes = plan.container.processes or visible_gpus(train_config.device)
    if processes == 1:
        from trainer.loop import train

        train(train_config)
    else:
        train_with_torchrun(train_config, processes, plan.checkpoint_dir / "train.yaml")
    return export_model(plan.train.out, plan.model_dir)


def visible_gpus(device: str) -> int:
    import torch

    return max(1, torch.cuda.device_count()) if device != "cpu" else 1


def train_with_torchrun(config: TrainConfig, processes: int, config_file: Path) -> None:
    """`dope train` in `processes` ranks on this node (DDP: each rank takes one GPU, or gloo on CPU)."""
    import subprocess

    write_text_atomic(config_file, config.to_yaml())
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
        "-m", "dope_app.cli", "train", "--config", str(config_file),
    ]
    log.info("training in %d processes: %s", processes, " ".join(command))
    code = subprocess.run(command).returncode
    if code != 0:
        raise DopeError(f"training with {processes} processes failed (torchrun exit code {code}; the ranks' messages are above)")


def export_model(run_dir: Path, model_dir: Path) -> Path:
    """The newest checkpoint without its optimiser state, as model_dir/model.pt (loads with
    `trainer.checkpoint.load_model`), plus the training settings beside it."""
    from trainer.checkpoint import latest_checkpoint, read_checkpoint, save_atomic

    found = latest_checkpoint(run_dir)
    if found is None:
        raise DopeError(f"training wrote no checkpoint in {run_dir}")
    state = read_checkpoint(found)
    model_file = model_dir / MODEL_FILE
    save_atomic({key: state[key] for key in ("meta", "model", "step", "config")}, model_file)
    write_text_atomic(model_dir / "train.yaml", yaml.safe_dump(state["config"], sort_keys=False))
    log.info("model (step %d) in %s", state["step"], model_file)
    return model_file


def report_failure(env: Environment, message: str) -> None:
    print(f"dope container: error: {message}", file=sys.stderr)
    if env.sagemaker:
        write_text_atomic(env.root / FAILURE_FILE, message + "\n")


def usage() -> str:
    return (__doc__ or "") + "\nkeys: " + ", ".join(known_keys())


def exit_on_sigterm() -> None:
    """`docker stop` and SageMaker (spot interruption, stopped job) send SIGTERM to PID 1, which
    Linux does not kill by default: turn it into SystemExit, so that cleanup runs and children stop.
    What is lost is at most the work since the last checkpoint or shard."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def main(argv: list[str] | None = None, variables: Mapping[str, str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(usage())
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    env = Environment.current(variables)
    try:
        plan = plan_run(collect_layers(argv, env), env)
        run_plan(plan)
    except DopeError as err:
        report_failure(env, str(err))
        return 2
    return 0


if __name__ == "__main__":
    exit_on_sigterm()
    sys.exit(main())
