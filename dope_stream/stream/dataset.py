"""`RayFrameDataset`: a PyTorch IterableDataset fed live by Ray renderer actors.

It yields raw WebDataset sample dicts, `{"__key__": "000123", "jpg"|"png", "json", "seg.png",
"depth.png"}`. Frames rendered now come decoded (`decoded=True`, the default): the image an RGB
uint8 array, `json` the annotation dict, the layers uint16 arrays, so the consumer runs no codec;
frames read back from finished shards come as bytes, as `webdataset` yields them.
`dope_stream.reader.decode_sample` reads both alike, and both give the same arrays: a kept stream's
JPEG pixels are decoded in the actor from the bytes it writes to the shard (see `dope_stream.synth`).
Without `write_shards` nothing is encoded at all and the image is the rendered one, without JPEG
loss. `decoded=False` hands over the shards' bytes instead (the consumer decodes).

One pass yields every frame 0..nb_frames-1 exactly once over all DDP ranks and DataLoader workers
(see the package docstring for the split).

DataLoader workers must be started with `multiprocessing_context="spawn"` (`LOADER_CONTEXT`): Ray
cannot run in a forked copy of a process that is connected to it, and a forked worker raises a
DopeError saying so. Under DDP, give every rank the same cluster address in `ray` (a `ray start
--head` on the node, or a cluster); with `ray: local` each rank starts a Ray instance of its own,
which also works. Memory per consumer: `stream_buffer` frames in flight, `shuffle_buffer` frames
being mixed, plus what the DataLoader prefetches.
"""

from __future__ import annotations

import logging
import random
from contextlib import closing
from pathlib import Path
from typing import Iterator

import ray
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..assets import target_cuboids
from ..config import GenerateConfig
from ..exchange import RawSample, read_shard, sample_key, shard_name
from ..writers import DatasetWriter, config_shard_ranges, open_writer
from .frames import FrameStream, plan_actors
from .session import cluster_address, connect

log = logging.getLogger(__name__)

LOADER_CONTEXT = "spawn"  # DataLoader(multiprocessing_context=LOADER_CONTEXT) when num_workers > 0

def consumer_slot(worker_id: int | None = None) -> tuple[int, int]:
    """(this consumer's number, number of consumers) over DDP ranks x DataLoader workers; `worker_id`
    overrides the DataLoader worker's own (a resumed epoch gives each worker another's part)."""
    rank, world = 0, 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    worker = get_worker_info()
    own_id, workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
    return rank * workers + (own_id if worker_id is None else worker_id), world * workers


def actors_for(consumer: int, consumers: int, total_actors: int) -> int:
    """This consumer's share of the renderer actors (at least one)."""
    return max(1, total_actors // consumers + (consumer < total_actors % consumers))


def shuffled(samples: Iterator[RawSample], size: int, rng: random.Random) -> Iterator[RawSample]:
    """Each sample leaves through a random slot of a `size`-frame buffer."""
    buffer: list[RawSample] = []
    with closing(samples):
        for sample in samples:
            if len(buffer) < size:
                buffer.append(sample)
                continue
            slot = rng.randrange(size)
            yield buffer[slot]
            buffer[slot] = sample
    rng.shuffle(buffer)
    yield from buffer


class RayFrameDataset(IterableDataset):
    """Frames of `config` rendered by Ray actors as the loader asks for them.

    write_shards: also persist every frame into `config.out` (same shards and manifest as `dope
    generate`); frames of shards already finished there are read back instead of rendered, so a
    second pass (epoch) or a restarted run costs no rendering. Without it, every pass renders.
    decoded: hand over fresh frames decoded (see the module docstring), else as the shards' bytes.
    Ray is joined (or started, `ray: local`) on construction, in the process that builds the dataset.
    """

    def __init__(self, config: GenerateConfig, write_shards: bool = True, decoded: bool = True):
        super().__init__()
        self.config = config
        self.write_shards = write_shards
        self.decoded = decoded
        connect(config.ray)
        self.address = cluster_address()
        self.cuboids = target_cuboids(config) if write_shards else {}
        if write_shards:
            open_writer(config, self.cuboids).close()  # bad `out` or another dataset there: fail here
        self.last_stream: FrameStream | None = None  # for stats; per process

    def __iter__(self) -> Iterator[RawSample]:
        return self.worker_frames()

    def worker_frames(self, worker_id: int | None = None) -> Iterator[RawSample]:
        """This consumer's frames, as DataLoader worker `worker_id` (default: this worker) gets them."""
        connect(self.address)  # a spawned worker or DDP rank joins; a forked worker raises
        consumer, consumers = consumer_slot(worker_id)
        samples = self._frames(consumer, consumers)
        if self.config.shuffle_buffer > 0:
            rng = random.Random(f"{self.config.seed}:{consumer}")
            samples = shuffled(samples, self.config.shuffle_buffer, rng)
        return samples

    def _frames(self, consumer: int, consumers: int) -> Iterator[RawSample]:
        if not self.write_shards:
            return self._render(range(consumer, self.config.nb_frames, consumers), consumer, consumers, None)
        return self._frames_of_shards(consumer, consumers)

    def _frames_of_shards(self, consumer: int, consumers: int) -> Iterator[RawSample]:
        out = Path(self.config.out)
        shards = [(k, frames) for k, frames in enumerate(config_shard_ranges(self.config)) if k % consumers == consumer]
        finished = [k for k, _ in shards if (out / shard_name(k)).is_file()]
        if finished:
            log.info("consumer %d/%d: %d finished shard(s) read back from %s", consumer, consumers, len(finished), out)
        for k in finished:
            yield from read_shard(out / shard_name(k))
        missing = [i for k, frames in shards if k not in finished for i in frames]
        if missing:
            writer = open_writer(self.config, self.cuboids)
            try:
                yield from self._render(missing, consumer, consumers, writer)
            finally:
                writer.close()

    def _render(
        self, indices, consumer: int, consumers: int, writer: DatasetWriter | None
    ) -> Iterator[RawSample]:
        actors = actors_for(consumer, consumers, plan_actors(self.config).count)
        members = ("decoded" if writer is None else "both") if self.decoded else "encoded"
        stream = FrameStream(self.config, indices, actors=actors, members=members)
        self.last_stream = stream
        for frame in stream:
            if writer is not None:
                writer.add(frame.encoded)
            yield {"__key__": sample_key(frame.index), **(frame.encoded.members if frame.decoded is None else frame.decoded)}
