"""`dope VERB ...`: thin wrappers around the library, one module per verb.

Only the chosen verb's module is imported, so `dope generate` never imports torch. Each verb's
module exposes `add_arguments(parser)` and `run(args) -> int` (the names are listed below).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import DopeError

# verb -> (module, function adding its options, function running it, one-line description)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "generate": ("dope_stream.generate", "add_arguments", "run", "render a synthetic dataset (shards or DOPE folder)"),
    "view": ("dope_stream.view", "add_arguments", "run", "draw cuboids and masks of a dataset for checking by eye"),
    "train": ("trainer.cli", "add_arguments", "run", "train a keypoint network on shards, folders or the live stream"),
    "infer": ("infer.cli", "add_infer_arguments", "run_infer", "detect objects and their 6-DoF poses in images"),
    "evaluate": ("infer.cli", "add_evaluate_arguments", "run_evaluate", "ADD/ADD-S accuracy of predictions"),
    "export": ("infer.cli", "add_export_arguments", "run_export", "export a checkpoint to ONNX"),
    "demo": ("infer.demo", "add_arguments", "run", "generate -> train -> infer -> evaluate on the built-in assets"),
}


def _usage() -> str:
    lines = ["usage: dope VERB [options]   (dope VERB --help for its options)", "", "verbs:"]
    lines += [f"  {verb:<10} {spec[3]}" for verb, spec in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    verb = argv[0]
    if verb not in COMMANDS:
        print(f"dope: unknown verb '{verb}'\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, add_name, run_name, description = COMMANDS[verb]
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        module = importlib.import_module(module_name)
        parser = argparse.ArgumentParser(prog=f"dope {verb}", description=description)
        getattr(module, add_name)(parser)
        args = parser.parse_args(argv[1:])
        return int(getattr(module, run_name)(args) or 0)
    except DopeError as err:
        print(f"dope {verb}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dope {verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
