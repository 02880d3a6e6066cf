"""`dope generate --ray`: the dataset of a local run, rendered by Ray actors."""

from __future__ import annotations

import logging
from pathlib import Path

from ..assets import target_cuboids
from ..config import GenerateConfig
from ..generate import write_samples
from ..writers import frames_to_render
from .frames import FrameStream, plan_actors
from .session import ray_session

log = logging.getLogger(__name__)


def generate_with_ray(config: GenerateConfig) -> Path:
    """Render every frame still missing in `config.out` with Ray actors; returns the output folder.

    Frames arrive in any order and the writers put them where a local run would, so the shards are
    byte-identical to `dope generate` with the same seed; a killed run resumes from what is on disk.
    """
    cuboids = target_cuboids(config)  # checks the target meshes before Ray starts
    missing = frames_to_render(config.out, config)
    if not missing:
        log.info("%s already holds all %d frames", config.out, config.nb_frames)
        return Path(config.out)
    with ray_session(config.ray):
        stream = FrameStream(config, missing, actors=plan_actors(config).count)
        write_samples(config, cuboids, stream, config.nb_frames - len(missing), desc="generate (ray)")
        log.info("ray: %s", stream.stats.summary())
    return Path(config.out)
