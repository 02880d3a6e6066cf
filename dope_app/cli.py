"""`dope VERB ...`: the command line, one verb per stage, each reading its section of the config tree.

A verb with a config model gets one option per field (`dope_stream.config.add_config_arguments`),
`--config FILE` (the verb's own keys, or a whole tree: its section is taken) and `--print-config`
(print the resolved settings as commented YAML and stop). `dope config [VERB]` prints the defaults
of the whole tree (or of one verb) as commented YAML. The backends' environment variables are read
here (`dope_app.environment`). Only the chosen verb's stage is imported, so `dope generate` never
imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from dataclasses import dataclass

from dope_stream.config import ConfigModel, GenerateConfig, add_config_arguments, config_from_args
from dope_stream.errors import DopeError
from infer.config import CalibrateConfig, EvaluateConfig, ExportConfig, InferConfig
from trainer.config import TrainConfig

from .config import DemoConfig, default_tree_yaml
from .environment import with_backend_environment


@dataclass(frozen=True)
class Verb:
    description: str
    config: type[ConfigModel] | None  # its options; None: `arguments` adds them
    run: str  # "module:function" taking the config (or, without one, the parsed arguments)
    arguments: str | None = None  # "module:function" adding the options of a verb without a config


COMMANDS: dict[str, Verb] = {
    "generate": Verb("render a synthetic dataset (shards or DOPE folder)", GenerateConfig, "dope_app.verbs:generate"),
    "view": Verb("draw cuboids and masks of a dataset for checking by eye", None, "dope_stream.view:run",
                 "dope_stream.view:add_arguments"),
    "train": Verb("train a keypoint network on shards, folders or the live stream", TrainConfig, "dope_app.verbs:train"),
    "infer": Verb("detect objects and their 6-DoF poses in images", InferConfig, "dope_app.verbs:infer"),
    "calibrate": Verb("measure a checkpoint's distance bias on synthetic frames and store the correction", CalibrateConfig,
                      "dope_app.verbs:calibrate"),
    "evaluate": Verb("ADD/ADD-S accuracy of predictions", EvaluateConfig, "dope_app.verbs:evaluate"),
    "export": Verb("export a checkpoint to ONNX", ExportConfig, "dope_app.verbs:export"),
    "demo": Verb("generate -> train -> infer -> evaluate on the built-in assets", DemoConfig, "dope_app.verbs:demo"),
    "config": Verb("print the default settings as commented YAML (all verbs, or one: dope config VERB)", None,
                   "dope_app.cli:print_defaults", "dope_app.cli:add_config_verb_arguments"),
}


def _usage() -> str:
    lines = ["usage: dope VERB [options]   (dope VERB --help for its options)", "", "verbs:"]
    lines += [f"  {verb:<10} {spec.description}" for verb, spec in COMMANDS.items()]
    return "\n".join(lines)


def _function(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def add_config_verb_arguments(parser: argparse.ArgumentParser) -> None:
    choices = [verb for verb, spec in COMMANDS.items() if spec.config is not None]
    parser.add_argument("verb", nargs="?", choices=choices, help="only this verb's settings (default: the whole tree)")


def print_defaults(args: argparse.Namespace) -> int:
    print(COMMANDS[args.verb].config.default_yaml() if args.verb else default_tree_yaml(), end="")
    return 0


def with_environment(config: ConfigModel) -> ConfigModel:
    """The edge: backend options the config leaves unset, from environment variables."""
    if isinstance(config, GenerateConfig):
        return with_backend_environment(config)
    if isinstance(config, TrainConfig) and config.stream is not None:
        return config.model_copy(update={"stream": with_backend_environment(config.stream)})
    return config


def run_verb(verb: str, argv: list[str]) -> int:
    spec = COMMANDS[verb]
    parser = argparse.ArgumentParser(prog=f"dope {verb}", description=spec.description)
    if spec.config is None:
        _function(spec.arguments)(parser)
        return int(_function(spec.run)(parser.parse_args(argv)) or 0)
    add_config_arguments(parser, spec.config)
    parser.add_argument("--print-config", action="store_true", help="print the resolved settings as commented YAML and stop")
    args = parser.parse_args(argv)
    config = with_environment(config_from_args(spec.config, args))
    if args.print_config:
        print(config.to_commented_yaml(), end="")
        return 0
    return int(_function(spec.run)(config) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    verb = argv[0]
    if verb not in COMMANDS:
        print(f"dope: unknown verb '{verb}'\n\n{_usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return run_verb(verb, argv[1:])
    except DopeError as err:
        print(f"dope {verb}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dope {verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
