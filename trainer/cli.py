"""`dope train`: options from TrainConfig (see trainer/config.py), work in trainer.loop.train."""

from __future__ import annotations

import argparse
import logging
import os

from dope_stream.config import add_config_arguments, config_from_args
from trainer.config import TrainConfig

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, TrainConfig)


def passive_openmp_wait() -> None:
    """Idle OpenMP threads sleep instead of spinning. A spinning torch thread takes the core that a
    renderer process (or a descheduled sibling thread) needs: on 2 busy cores a training step took
    10.7 s with spinning threads, 5.8 s without. OpenMP reads this when torch loads, so it is set
    before the first torch import (the user's own setting wins)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def run(args: argparse.Namespace) -> int:
    passive_openmp_wait()
    from trainer.loop import train

    config = config_from_args(TrainConfig, args)
    summary = train(config)
    if summary.checkpoint is not None:
        log.info("trained %d steps; checkpoint %s", summary.steps, summary.checkpoint)
    if summary.images:
        log.info("%d images in %.0f s of training; waited for data %.1f%% of the time", summary.images,
                 summary.train_s + summary.wait_s, 100 * summary.wait_share)
    return 0
