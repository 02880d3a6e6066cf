"""`dope generate --ray`: the dataset of a local run, rendered by Ray actors."""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm import tqdm

from ..assets import target_cuboids
from ..config import GenerateConfig
from ..writers import DatasetWriter, frames_to_render, open_writer
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
        writer: DatasetWriter | None = None
        done = config.nb_frames - len(missing)
        with tqdm(total=config.nb_frames, initial=done, unit="img", desc="generate (ray)") as bar:
            try:
                for sample in stream:
                    # Opened on the first frame: a run that fails before any frame leaves no manifest.
                    writer = writer or open_writer(config, cuboids)
                    writer.add(sample)
                    bar.update(1)
            finally:
                if writer is not None:
                    writer.close()
        log.info(
            "ray: %d frames by %d actors in %.1f s (%.1f frames/s, actors idle %.0f%%, %d replaced)",
            stream.stats.frames,
            stream.stats.actors,
            stream.stats.elapsed_s(),
            stream.stats.frames / max(1e-9, stream.stats.elapsed_s()),
            100 * stream.stats.idle_share(),
            stream.stats.replaced_actors,
        )
    return Path(config.out)
