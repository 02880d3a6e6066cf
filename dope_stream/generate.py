"""`dope generate`: render a synthetic dataset into WebDataset shards or a DOPE folder.

`generate(config)` renders the frames still missing in `config.out` (see `writers.frames_to_render`)
and writes them; re-running the same command after a kill finishes the dataset. Rendering is a
sample source feeding one sink (`write_samples`): this process, `render_workers` local processes
started with "spawn" (each gets its own EGL context and builds one `FrameSynthesizer`, handed out
small chunks), or, with `ray` set, Ray actors (`dope_stream.stream.ray_generate`). Sources yield
frames in any order; the writers put each where it belongs, so every source gives the same bytes.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Iterable, Iterator

from tqdm import tqdm

from .assets import target_cuboids
from .config import GenerateConfig
from .geometry import Cuboid
from .outputs import output_folder
from .processes import die_with_parent
from .synth import FrameSynthesizer, Sample, render_in_calling_thread
from .writers import DatasetWriter, frames_to_render, open_writer

log = logging.getLogger(__name__)

MAX_CHUNK = 16  # frames per task: big enough to amortise pickling, small enough to balance load
CHUNKS_IN_FLIGHT_PER_WORKER = 2  # bounds memory while keeping every worker busy


def generate(config: GenerateConfig) -> Path:
    """Render every missing frame of `config` into `config.out`; returns the output folder."""
    output_folder(config.out, "--out")
    cuboids = target_cuboids(config)  # checks the target meshes before any process starts
    missing = frames_to_render(config.out, config)
    if not missing:
        log.info("%s already holds all %d frames", config.out, config.nb_frames)
        # A run killed after its last frame but before its final manifest left one that says
        # incomplete: rewrite it from the files on disk.
        open_writer(config, cuboids).close()
        return Path(config.out)
    with sample_source(config, missing) as samples:
        desc = "generate (ray)" if config.ray is not None else "generate"
        write_samples(config, cuboids, samples, already_done=config.nb_frames - len(missing), desc=desc)
    return Path(config.out)


def sample_source(config: GenerateConfig, indices: list[int]) -> AbstractContextManager[Iterator[Sample]]:
    """Frames `indices` of `config` in any order, from the renderers `config` asks for."""
    if config.ray is not None:
        from .stream.ray_generate import ray_samples  # imports Ray only when asked for

        return ray_samples(config, indices)
    if config.render_workers == 1:
        return nullcontext(_render_here(config, indices))
    return nullcontext(_render_in_processes(config, indices))


def write_samples(
    config: GenerateConfig,
    cuboids: dict[str, Cuboid],
    samples: Iterable[Sample],
    already_done: int,
    desc: str = "generate",
) -> None:
    """Write `samples` (any order) into `config.out` with a progress bar over the whole dataset."""
    writer: DatasetWriter | None = None
    with tqdm(total=config.nb_frames, initial=already_done, unit="img", desc=desc) as bar:
        try:
            for sample in samples:
                # Opened on the first frame: a run that fails before any frame leaves no manifest behind.
                writer = writer or open_writer(config, cuboids)
                writer.add(sample)
                bar.update(1)
        finally:
            if writer is not None:
                writer.close()


def _render_here(config: GenerateConfig, indices: list[int]) -> Iterator[Sample]:
    synthesizer = FrameSynthesizer(config)  # built now: bad assets fail before the progress bar
    return _render_with(synthesizer, indices)


def _render_with(synthesizer: FrameSynthesizer, indices: list[int]) -> Iterator[Sample]:
    with synthesizer:
        for index in indices:
            yield synthesizer.render(index)


def _render_in_processes(config: GenerateConfig, indices: list[int]) -> Iterator[Sample]:
    """Samples from `config.render_workers` spawned processes, in completion order."""
    size = max(1, min(MAX_CHUNK, len(indices) // (config.render_workers * 4)))
    chunks = iter([indices[i : i + size] for i in range(0, len(indices), size)])
    context = multiprocessing.get_context("spawn")
    # Started from this (the main) thread, and killed with this process: see `die_with_parent`.
    pool = ProcessPoolExecutor(
        config.render_workers, mp_context=context, initializer=die_with_parent, initargs=(os.getpid(),)
    )
    with pool:
        running: set[Future] = set()
        try:
            while True:
                while len(running) < config.render_workers * CHUNKS_IN_FLIGHT_PER_WORKER:
                    chunk = next(chunks, None)
                    if chunk is None:
                        break
                    running.add(pool.submit(_render_chunk, config, chunk))
                if not running:
                    return
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield from future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


# One synthesizer per worker process, built by its first chunk (a pool initializer that fails would
# leave the pool broken without the error's message; a failing task re-raises it in the parent).
_WORKER_SYNTHESIZER: FrameSynthesizer | None = None


def _render_chunk(config: GenerateConfig, indices: list[int]) -> list[Sample]:
    global _WORKER_SYNTHESIZER
    if _WORKER_SYNTHESIZER is None:
        render_in_calling_thread()  # the workers fill the cores
        _WORKER_SYNTHESIZER = FrameSynthesizer(worker_config(config))
    return [_WORKER_SYNTHESIZER.render(index) for index in indices]


def worker_config(config: GenerateConfig) -> GenerateConfig:
    """`config` for one of `render_workers` processes: unless set, pathtrace's Dr.Jit and OIDN pools
    get one share of the cores each (they take every core by default)."""
    if config.pathtrace.threads is not None:
        return config
    threads = max(1, (os.cpu_count() or 1) // config.render_workers)
    return config.model_copy(update={"pathtrace": config.pathtrace.model_copy(update={"threads": threads})})
