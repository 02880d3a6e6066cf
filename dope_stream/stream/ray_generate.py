"""`dope generate --ray`: Ray actors as the sample source of `dope_stream.generate.generate`."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

from ..config import GenerateConfig
from ..synth import Sample
from .frames import FrameStream, plan_actors
from .session import ray_session

log = logging.getLogger(__name__)


@contextmanager
def ray_samples(config: GenerateConfig, indices: list[int]) -> Iterator[Iterator[Sample]]:
    """Frames `indices` of `config`, rendered by Ray actors, in arrival order, for the block.

    Ray is joined (or started) for the block only. Frames arrive in any order and the writers put
    them where a local run would, so the shards are byte-identical to a local run with the same seed.
    """
    with ray_session(config.ray):
        stream = FrameStream(config, indices, actors=plan_actors(config).count, members="encoded")
        yield (frame.encoded for frame in stream)
        log.info("ray: %s", stream.stats.summary())
