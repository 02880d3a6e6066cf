"""`dope generate`: render a synthetic dataset into WebDataset shards or a DOPE folder.

`generate(config)` renders the frames still missing in `config.out` (see `writers.frames_to_render`)
and writes them; re-running the same command after a kill finishes the dataset. With `workers` > 1,
frames are rendered by that many local processes started with "spawn" (each gets its own EGL context
and builds one `FrameSynthesizer`), handed out in small chunks; the parent only writes. With
`ray` set, the work goes to `dope_stream.stream.generate_with_ray` instead.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Iterable, Iterator

from tqdm import tqdm

from .assets import target_cuboids
from .config import GenerateConfig, add_config_arguments, config_from_args
from .geometry import Cuboid
from .outputs import output_folder
from .processes import die_with_parent
from .render.pathtrace import THREADS_ENV as PATHTRACE_THREADS_ENV
from .synth import FrameSynthesizer, Sample
from .writers import DatasetWriter, frames_to_render, open_writer

log = logging.getLogger(__name__)

MAX_CHUNK = 16  # frames per task: big enough to amortise pickling, small enough to balance load
CHUNKS_IN_FLIGHT_PER_WORKER = 2  # bounds memory while keeping every worker busy


def generate(config: GenerateConfig) -> Path:
    """Render every missing frame of `config` into `config.out`; returns the output folder."""
    output_folder(config.out, "--out")
    if config.ray is not None:
        from .stream import generate_with_ray  # imports Ray only when asked for

        return generate_with_ray(config)
    cuboids = target_cuboids(config)  # checks the target meshes before any process starts
    missing = frames_to_render(config.out, config)
    if not missing:
        log.info("%s already holds all %d frames", config.out, config.nb_frames)
    samples = _render_here(config, missing) if config.workers == 1 else _render_in_processes(config, missing)
    write_samples(config, cuboids, samples, already_done=config.nb_frames - len(missing))
    return Path(config.out)


def write_samples(
    config: GenerateConfig,
    cuboids: dict[str, Cuboid],
    samples: Iterable[Sample],
    already_done: int,
    desc: str = "generate",
) -> None:
    """Write `samples` (any order) into `config.out` with a progress bar over the whole dataset.

    Shared by the local run and `dope_stream.stream.generate_with_ray`.
    """
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
    if not indices:
        return iter(())
    synthesizer = FrameSynthesizer(config)  # built now: bad assets fail before the progress bar
    return _render_with(synthesizer, indices)


def _render_with(synthesizer: FrameSynthesizer, indices: list[int]) -> Iterator[Sample]:
    with synthesizer:
        for index in indices:
            yield synthesizer.render(index)


def _render_in_processes(config: GenerateConfig, indices: list[int]) -> Iterator[Sample]:
    """Samples from `config.workers` spawned processes, in completion order."""
    if not indices:
        return
    size = max(1, min(MAX_CHUNK, len(indices) // (config.workers * 4)))
    chunks = iter([indices[i : i + size] for i in range(0, len(indices), size)])
    context = multiprocessing.get_context("spawn")
    # Started from this (the main) thread, and killed with this process: see `die_with_parent`.
    pool = ProcessPoolExecutor(config.workers, mp_context=context, initializer=die_with_parent, initargs=(os.getpid(),))
    with pool:
        running: set[Future] = set()
        try:
            while True:
                while len(running) < config.workers * CHUNKS_IN_FLIGHT_PER_WORKER:
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
        # The workers fill the cores, so llvmpipe renders in this thread: its own render threads
        # only add hand-offs (measured with 2 workers on 2 cores: ~2 ms more CPU per image, 3-4 %;
        # no gain in wall time). A user's LP_NUM_THREADS wins.
        os.environ.setdefault("LP_NUM_THREADS", "0")
        # Likewise pathtrace's Dr.Jit and OIDN pools: one share of the cores per worker.
        os.environ.setdefault(PATHTRACE_THREADS_ENV, str(max(1, (os.cpu_count() or 1) // config.workers)))
        _WORKER_SYNTHESIZER = FrameSynthesizer(config)
    return [_WORKER_SYNTHESIZER.render(index) for index in indices]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, GenerateConfig)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(GenerateConfig, args)
    out = generate(config)
    log.info("dataset in %s (%d frames, %s layout)", out, config.nb_frames, config.layout)
    return 0
