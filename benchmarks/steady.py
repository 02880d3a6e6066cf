"""Steady throughput, measured one way for every benchmark that quotes images/s or frames/s.

A run stamps each frame as it reaches its consumer (`stamped`). Its steady rate counts the frames
that arrive after the first `WARMUP_SHARE` of them (process start-up, asset loading, shader
variants, the first photo uploads) and up to the frame at `1 - TAIL_SHARE` (the last chunks, when
some workers have run out of work). Frames arrive in bursts (a worker's chunk, a loader's batch),
so the window is bounded by arrival times: a burst that arrives at its start rendered before it and
is left out, the burst that ends it rendered inside it and counts. Each figure is the median of
`repeats` runs, printed with their spread; `bench_stream.py` interleaves the runs it compares, so
every ratio compares runs made under the same load.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

WARMUP_SHARE = 0.2
TAIL_SHARE = 0.1


def stamped(frames: Iterable, arrivals: list[float]) -> Iterator:
    """`frames`, appending the time each one arrives to `arrivals`."""
    for frame in frames:
        arrivals.append(time.perf_counter())
        yield frame


def steady_rate(arrivals: Sequence[float]) -> float:
    """Frames/s between the arrivals at `WARMUP_SHARE` and `1 - TAIL_SHARE` of a run (see above)."""
    times = sorted(arrivals)
    start, end = times[int(len(times) * WARMUP_SHARE)], times[int(len(times) * (1 - TAIL_SHARE)) - 1]
    counted = sum(start < t <= end for t in times)
    if counted == 0 or end <= start:
        raise ValueError(f"{len(times)} frames in too few bursts for a steady rate: run more frames")
    return counted / (end - start)


@dataclass(frozen=True)
class Rate:
    """The median and the spread of one figure's runs."""

    runs: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def spread(self) -> str:
        return f"{min(self.runs):.1f}-{max(self.runs):.1f}" if len(self.runs) > 1 else ""


def generate_arrivals(config) -> list[float]:
    """Arrival times of the frames `dope generate` writes for `config` (into an empty `out`): its
    sample source and writer, stamped between them."""
    from dope_stream.assets import target_cuboids
    from dope_stream.generate import sample_source, write_samples

    arrivals: list[float] = []
    with sample_source(config, list(range(config.nb_frames))) as samples:
        write_samples(config, target_cuboids(config), stamped(samples, arrivals), already_done=0)
    return arrivals
