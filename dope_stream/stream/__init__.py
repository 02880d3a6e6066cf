"""Streaming synthesis on Ray: renderer actors feeding WebDataset shards and a live PyTorch dataset.

Pieces (each module imports Ray; only `dataset` imports torch):
- `session`: `ray_session(address, num_cpus)` joins a cluster or starts local Ray (no dashboard, the
  machine's CPU count, quiet logs) and shuts down only what it started; an unreachable address is
  one DopeError within seconds.
- `frames`: `RendererActor` (a Ray actor owning ONE `FrameSynthesizer`, built once, reused for every
  frame) and `FrameStream`, the coordinator. The coordinator is the consuming process itself: it
  hands out frame indices in small chunks, in index order, to the actor with the least queued work.
  Frame i depends only on (seed, i), so whichever actor renders it gives the same bytes.
  Backpressure: frames handed out and not yet consumed never exceed `stream_buffer`; when the
  consumer is slow, actors finish their chunks and wait; when actors are slow, the consumer blocks in
  `ray.wait`. Faults: a chunk whose actor died goes back to the front of the queue and a fresh actor
  takes the dead one's place, so no frame is lost or produced twice.
- `ray_generate`: `ray_samples(config, indices)`, the Ray sample source of `dope generate --ray`:
  `dope_stream.generate.generate` writes what it yields with the same writers as a local run
  (resuming after a kill), so the shards are byte-identical to `dope generate` with the same seed.
- `dataset`: `RayFrameDataset`, a torch `IterableDataset` yielding raw WebDataset sample dicts.

Who renders and writes what (one rule, no cross-process coordination): every consumer process —
each (DDP rank, DataLoader worker) pair — runs its own actors over its own share of the frames.
With `write_shards`, consumer c of n owns the shards k with k % n == c: it renders exactly their
frames and writes them, so each shard is written by exactly one process (the writers buffer a
shard until it is complete, which only works within one process) and shards of different consumers
never collide; finished shards on disk are read back instead of rendered again (resume, later
epochs). Without writing, consumer c gets the frames i with i % n == c (finer balance). Either way
the shares are disjoint and cover 0..nb_frames-1, so one pass yields every frame exactly once.
The `render_workers` actors (or one per GPU of the cluster) are split between all consumers, at least one each.
"""
