"""What a run trains and validates on: `plan_data(config, dist) -> DataPlan`.

Three training sources: local shards/folders (random access, a seeded held-out validation share),
remote shards (streamed; validation from `--val_data`), or the live stream (`trainer.streaming`).
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from dope_stream.errors import DopeError
from dope_stream.reader import LocalDataset, is_remote, open_dataset, stream_shards
from trainer.config import TrainConfig
from trainer.data import DataPlan, EpochSampler, FrameEncoder, IterableSource, MapDataset, encoder_settings, validation_set
from trainer.streaming import stream_plan

log = logging.getLogger(__name__)


def plan_data(config: TrainConfig, rank: int, world_size: int) -> DataPlan:
    """Training source (local, remote shards or the live stream) and the fixed validation set."""
    if config.stream is not None:
        return stream_plan(config)
    if not config.data:
        raise DopeError("option 'data': give at least one dataset (or --stream CONFIG)")
    local = [p for p in config.data if not is_remote(str(p))]
    remote = [str(p) for p in config.data if is_remote(str(p))]
    if not local and not config.val_data:
        raise DopeError("option 'val_data': remote-only --data needs a local validation set")
    reference = open_dataset(local or config.val_data, config.unit)
    class_name = resolve_class(reference, config.object)
    cuboid = reference.cuboids.get(class_name)
    if cuboid is None:
        log.warning("no cuboid for class %s in the dataset manifest: the checkpoint will lack dimensions", class_name)
    train_encoder = FrameEncoder(encoder_settings(config, class_name, reference.unit, train=True, cuboid=cuboid))
    train_local, held_out = (reference, None) if config.val_data or remote else split_validation(reference, config.val_fraction, config.seed)
    validation = validation_set(config, class_name, cuboid, held_out)
    if remote:
        source = IterableSource(functools.partial(stream_shards, remote), train_encoder, rank, world_size, config.batch_size)
        return DataPlan(source, None, validation, class_name, cuboid)
    train = MapDataset(train_local, train_encoder)
    sampler = EpochSampler(train, world_size, rank, shuffle=True, seed=config.seed)
    return DataPlan(train, sampler, validation, class_name, cuboid)


def resolve_class(dataset: LocalDataset, requested: str | None) -> str:
    if requested is not None:
        dataset.check_class(requested)
        return requested
    present = dataset.classes_present()
    if len(present) != 1:
        raise DopeError(f"option 'object': the data holds classes {', '.join(present) or 'none'}; name one")
    return present[0]


def split_validation(dataset: LocalDataset, fraction: float, seed: int) -> tuple[LocalDataset, LocalDataset | None]:
    """Hold out a fixed, seeded share of the samples for validation."""
    count = int(round(len(dataset) * fraction))
    if count == 0:
        return dataset, None
    held = set(np.random.default_rng(seed).permutation(len(dataset))[:count].tolist())
    train_refs = [ref for i, ref in enumerate(dataset.refs) if i not in held]
    held_refs = [ref for i, ref in enumerate(dataset.refs) if i in held]
    return (
        LocalDataset(train_refs, dataset.unit, dataset.cuboids, dataset.manifests),
        LocalDataset(held_refs, dataset.unit, dataset.cuboids, dataset.manifests),
    )
