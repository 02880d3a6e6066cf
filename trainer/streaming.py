"""`dope train` with `stream`: train on frames rendered by Ray actors during the run.

`stream` is a `dope generate` config (GenerateConfig, nested in TrainConfig). `dope_stream.stream.dataset.RayFrameDataset`
renders the frames, writes them into the config's `out` as shards (a later epoch or a restarted run
reads finished shards back instead of rendering them) and splits the work across DDP ranks and
DataLoader workers itself. One pass over its `nb_frames` frames is one epoch (or
`stream_frames_per_epoch`). The validation set comes from `--val_data` (on disk), if given.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from dope_stream.config import GenerateConfig
from dope_stream.errors import DopeError
from dope_stream.exchange import shard_name
from dope_stream.writers import config_shard_ranges
from trainer.config import TrainConfig
from trainer.data import DataPlan, FrameEncoder, IterableSource, encoder_settings, validation_set

log = logging.getLogger(__name__)


def stream_plan(config: TrainConfig) -> DataPlan:
    """DataPlan whose training source is the live stream of `config.stream`."""
    from dope_stream.stream.dataset import RayFrameDataset  # imports Ray: only for --stream

    generate_config = config.stream
    if generate_config.ray is None:
        generate_config = generate_config.model_copy(update={"ray": "local"})
    frames = RayFrameDataset(generate_config, write_shards=True)
    classes = sorted(frames.cuboids)
    class_name = config.object or (classes[0] if len(classes) == 1 else None)
    if class_name not in frames.cuboids:
        raise DopeError(f"option 'object': class {class_name!r} is not rendered by the stream into {generate_config.out} (classes: {', '.join(classes)})")
    cuboid = frames.cuboids[class_name]
    encoder = FrameEncoder(encoder_settings(config, class_name, "m", train=True, cuboid=cuboid))
    # RayFrameDataset already gives each rank and worker its own frames. A bound method (not a
    # lambda) pickles into spawned DataLoader workers.
    source = IterableSource(frames.worker_frames, encoder, rank=0, world_size=1, batch_size=config.batch_size, split=False)
    source.frames_per_epoch = config.stream_frames_per_epoch or generate_config.nb_frames
    validation = validation_set(config, class_name, cuboid)
    log.info("streaming %s: %d frames per epoch into %s", class_name, source.frames_per_epoch, generate_config.out)
    renderers = functools.partial(busy_renderer_cpus, generate_config)
    return DataPlan(source, None, validation, class_name, cuboid, renderers)


def busy_renderer_cpus(generate_config: GenerateConfig) -> int:
    """CPU renderer processes the next pass runs: none once every shard is on disk (read back) or
    when the actors render on GPUs."""
    from dope_stream.stream.frames import plan_actors

    out = Path(generate_config.out)
    if all((out / shard_name(k)).is_file() for k in range(len(config_shard_ranges(generate_config)))):
        return 0
    plan = plan_actors(generate_config)
    return 0 if plan.num_gpus > 0 else plan.count
