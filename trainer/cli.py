"""`dope train`: options from TrainConfig (see trainer/config.py), work in trainer.loop.train."""

from __future__ import annotations

import argparse
import logging

from dope_stream.config import add_config_arguments, config_from_args
from trainer.config import TrainConfig

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, TrainConfig)


def run(args: argparse.Namespace) -> int:
    from trainer.loop import train

    config = config_from_args(TrainConfig, args)
    summary = train(config)
    if summary.checkpoint is not None:
        log.info("trained %d steps; checkpoint %s", summary.steps, summary.checkpoint)
    return 0
