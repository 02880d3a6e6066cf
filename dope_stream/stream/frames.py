"""Renderer actors and `FrameStream`, the coordinator that streams their frames with bounded work.

The coordinator runs in the consuming process: it hands frame indices out in chunks, in index order
(so shards fill up one after another), to the ready actor with the fewest queued chunks (ties go to
the one handed work longest ago, so every actor keeps getting work: an actor that died idle is then
handed a chunk, which fails, and is replaced), and yields frames in arrival order. Frames handed
out but not yet consumed never exceed `buffer`: that bounds the memory held in actors, in Ray's
object store and here, and makes the actors pause when the consumer is slower than they are.

Actors are spread over the cluster's nodes (Ray's SPREAD strategy) and get work only once they
are ready, so a replacement that finds no free CPU/GPU (its node died) just never gets any: the
other actors finish the job. A chunk is lost when its actor dies or when its result lived in the
object store of a node that died; either way it is handed out again.

What travels (`members`): "encoded" (`dope generate --ray`: the shards' bytes), "decoded" (a stream
whose frames are not kept: arrays, no codec runs at all) or "both" (a kept stream: the actor
encodes for the shards and hands the trainer the decoded members too, so the consumer runs no
codec). Decoded frames are larger (about 1.8 MB at 512x512 against 0.15 MB encoded); within a
node Ray's object store shares them without copying, across nodes they cross the network.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Iterator, Literal, Sequence

import ray
from ray.exceptions import ObjectLostError, RayActorError, RayTaskError

from ..config import GenerateConfig
from ..errors import DopeError
from ..synth import FrameSynthesizer, RenderedFrame, render_in_calling_thread

log = logging.getLogger(__name__)

CHUNKS_PER_ACTOR = 2  # one rendering, one queued: an actor never waits for the round trip
MAX_CHUNK = 8  # frames per task: amortises the task overhead, keeps the buffer bound fine-grained
ACTOR_START_TIMEOUT_S = 300.0  # asset loading takes seconds; minutes mean no free CPU/GPU in the cluster
REPLACEMENTS_PER_ACTOR = 3  # dead actors replaced before giving up (a crash on every frame is a bug)
Members = Literal["encoded", "decoded", "both"]


@dataclass
class RenderedChunk:
    """What an actor sends back for one chunk of frame indices."""

    frames: list[RenderedFrame]
    busy_s: float  # seconds spent rendering the chunk
    finished_at: list[float]  # time.monotonic() when each frame was done (one clock per host)
    node: str  # Ray node id of the actor


class FrameRenderer:
    """Runs inside a Ray actor: ONE FrameSynthesizer (assets + renderer) for every frame it renders.
    fills_cores: the actors take every CPU of the cluster (see `render_in_calling_thread`)."""

    def __init__(self, config: GenerateConfig, fills_cores: bool = False):
        self.error: str | None = None
        self.synthesizer: FrameSynthesizer | None = None
        if fills_cores:
            render_in_calling_thread()
        try:
            self.synthesizer = FrameSynthesizer(config)
        except DopeError as err:  # reported by ready()/render() as a DopeError, not an actor death
            self.error = str(err)

    def ready(self) -> str | None:
        """None once the synthesizer is built, else the DopeError message that stopped it."""
        return self.error

    def render(self, indices: list[int], members: Members) -> RenderedChunk:
        if self.synthesizer is None:
            raise DopeError(self.error)
        start = time.perf_counter()
        frames, finished_at = [], []
        encoded, decoded = members in ("encoded", "both"), members in ("decoded", "both")
        for index in indices:
            frames.append(self.synthesizer.render_frame(index, encoded, decoded))
            finished_at.append(time.monotonic())
        return RenderedChunk(frames, time.perf_counter() - start, finished_at, ray.get_runtime_context().get_node_id())


RendererActor = ray.remote(FrameRenderer)


@dataclass(frozen=True)
class ActorPlan:
    """How many renderer actors to run and what each one reserves in the cluster."""

    count: int
    num_cpus: float
    num_gpus: float
    fills_cores: bool = False  # CPU actors, at least as many as the cluster's CPUs


def plan_actors(config: GenerateConfig) -> ActorPlan:
    """One actor per `actor_gpus` GPUs when the cluster has GPUs, else `render_workers` CPU actors.

    CPU actors reserve at most one CPU each, less when `render_workers` exceeds the cluster's CPUs, so the
    number the user asked for always fits (oversubscribing is then their explicit choice).
    """
    resources = ray.cluster_resources()
    gpus = resources.get("GPU", 0.0)
    if gpus > 0 and config.actor_gpus > 0:
        count = int(gpus // config.actor_gpus)
        if count < 1:
            raise DopeError(f"actor_gpus: {config.actor_gpus} GPUs per actor, but the Ray cluster has {gpus:g}")
        return ActorPlan(count, 1.0, config.actor_gpus)
    cpus = resources.get("CPU", 1.0)
    workers = config.render_workers
    return ActorPlan(workers, min(1.0, cpus / workers), 0.0, fills_cores=workers >= cpus)


@dataclass
class StreamStats:
    """Throughput and backpressure figures of one pass; event times only when tracing."""

    actors: int
    started_at: float = field(default_factory=time.monotonic)
    frames: int = 0
    busy_s: float = 0.0  # rendering seconds summed over actors
    replaced_actors: int = 0
    frames_by_node: Counter = field(default_factory=Counter)  # Ray node id -> frames its actors rendered
    rendered_at: list[float] = field(default_factory=list)
    consumed_at: list[float] = field(default_factory=list)

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_at

    def idle_share(self) -> float:
        """Share of the actors' time spent not rendering (waiting on the consumer or the driver)."""
        return max(0.0, 1.0 - self.busy_s / max(1e-9, self.actors * self.elapsed_s()))

    def summary(self) -> str:
        elapsed = self.elapsed_s()
        return (
            f"{self.frames} frames by {self.actors} actors in {elapsed:.1f} s ({self.frames / max(1e-9, elapsed):.1f} "
            f"frames/s, on {len(self.frames_by_node)} node(s), actors idle {self.idle_share():.0%}, "
            f"{self.replaced_actors} replaced)"
        )

    def max_buffered(self) -> int:
        """Most frames rendered but not yet consumed at any moment (needs tracing)."""
        events = sorted([(t, 1) for t in self.rendered_at] + [(t, -1) for t in self.consumed_at])
        buffered = peak = 0
        for _, change in events:
            buffered += change
            peak = max(peak, buffered)
        return peak


class FrameStream:
    """Iterate to render `indices` with `actors` renderer actors; yields each frame once, as it arrives,
    with the `members` asked for (see the module docstring).

    Actors start when iteration starts and are killed when it ends (also on break or error). A chunk
    whose actor died is handed out again; a fresh actor replaces the dead one and gets work once ready.
    """

    def __init__(
        self,
        config: GenerateConfig,
        indices: Sequence[int],
        actors: int,
        buffer: int | None = None,
        trace: bool = False,
        members: Members = "encoded",
    ):
        if actors < 1:
            raise DopeError(f"workers: need at least one renderer actor, got {actors}")
        self.config = config
        self.indices = list(indices)
        self.plan = plan_actors(config)
        self.actor_count = actors
        self.buffer = buffer or config.stream_buffer
        self.chunk_size = max(1, min(MAX_CHUNK, self.buffer // (actors * CHUNKS_PER_ACTOR)))
        self.trace = trace
        self.members = members
        self.actors: list = []
        self.starting: dict[ray.ObjectRef, int] = {}  # ready() call -> slot of an actor not ready yet
        self.ready_slots: set[int] = set()  # slots whose actor takes chunks
        self.dead_slots: set[int] = set()  # slots whose actor died, replaced once their chunks are back
        self.chunk_numbers = itertools.count()
        self.last_chunk_of: dict[int, int] = {}  # slot -> number of the last chunk it was handed
        self.stats = StreamStats(actors)

    def __iter__(self) -> Iterator[RenderedFrame]:
        if not self.indices:
            return
        try:
            self.actors = [None] * self.actor_count
            for slot in range(self.actor_count):
                self._start_actor(slot)
            self.stats = StreamStats(self.actor_count)
            yield from self._dispatch()
        finally:
            self.close()

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors, self.starting, self.ready_slots, self.dead_slots = [], {}, set(), set()

    def _start_actor(self, slot: int) -> None:
        options = dict(num_cpus=self.plan.num_cpus, num_gpus=self.plan.num_gpus, scheduling_strategy="SPREAD")
        self.actors[slot] = RendererActor.options(**options).remote(self.config, self.plan.fills_cores)
        self.starting[self.actors[slot].ready.remote()] = slot

    def _dispatch(self) -> Iterator[RenderedFrame]:
        pending = deque(self.indices)  # not handed out yet (or handed back by a dead actor)
        running: dict[ray.ObjectRef, tuple[int, list[int]]] = {}  # task -> (actor slot, its frames)
        ready: deque[RenderedFrame] = deque()
        outstanding = 0  # handed out and not yet consumed: <= self.buffer
        while True:
            outstanding += self._submit(pending, running, outstanding)
            if ready:
                frame = ready.popleft()
                if self.trace:
                    self.stats.consumed_at.append(time.monotonic())
                yield frame
                outstanding -= 1
                continue
            if not running and not pending:
                return
            done = self._wait(running)
            if done in self.starting:
                self._actor_started(done, running)
                continue
            slot, chunk = running.pop(done)
            chunk_result = self._collect(done, slot)
            if chunk_result is None:
                pending.extendleft(reversed(chunk))
                outstanding -= len(chunk)
            else:
                ready.extend(chunk_result.frames)
            self._replace_when_drained(slot, running)

    def _wait(self, running: dict) -> ray.ObjectRef:
        """The next started actor or finished chunk; with nothing rendering, actors must start in time.
        Started actors are looked for first: of several ready references `ray.wait` returns one of its
        choosing, and behind a fast actor's finished chunks a late one's start could go unseen, so
        that it got no work until the end (a cause of the node-kill test's rare failures)."""
        if self.starting:
            started, _ = ray.wait(list(self.starting), num_returns=len(self.starting), timeout=0)
            if started:
                return started[0]
        timeout = None if running else ACTOR_START_TIMEOUT_S
        done, _ = ray.wait(list(running) + list(self.starting), num_returns=1, timeout=timeout)
        if not done:
            raise DopeError(
                f"ray: no renderer actor started within {ACTOR_START_TIMEOUT_S:.0f} s; each needs "
                f"{self.plan.num_cpus:g} CPU and {self.plan.num_gpus:g} GPU (the cluster has {ray.cluster_resources()})"
            )
        return done[0]

    def _actor_started(self, ready_call: ray.ObjectRef, running: dict) -> None:
        slot = self.starting.pop(ready_call)
        try:
            error = ray.get(ready_call)
        except RayActorError:  # died while starting (e.g. with its node)
            self.dead_slots.add(slot)
            self._replace_when_drained(slot, running)
            return
        if error is not None:
            raise DopeError(error)
        if not self.ready_slots and not self.stats.frames:
            self.stats.started_at = time.monotonic()  # throughput from the first ready actor on
        self.ready_slots.add(slot)

    def _submit(self, pending: deque[int], running: dict, outstanding: int) -> int:
        """Hand chunks to the least busy ready actors while the buffer and the per-actor queues allow."""
        handed_out = 0
        queued = {slot: 0 for slot in self.ready_slots}
        for slot, _ in running.values():
            if slot in queued:
                queued[slot] += 1
        while pending and queued:
            slot = min(queued, key=lambda s: (queued[s], self.last_chunk_of.get(s, -1)))
            size = min(self.chunk_size, len(pending))
            if queued[slot] >= CHUNKS_PER_ACTOR or outstanding + handed_out + size > self.buffer:
                break
            chunk = [pending.popleft() for _ in range(size)]
            running[self.actors[slot].render.remote(chunk, self.members)] = (slot, chunk)
            self.last_chunk_of[slot] = next(self.chunk_numbers)
            queued[slot] += 1
            handed_out += size
        return handed_out

    def _collect(self, task: ray.ObjectRef, slot: int) -> RenderedChunk | None:
        """The chunk's frames, or None when they were lost with their actor or node (the slot is then
        marked dead: no new chunks for it)."""
        try:
            chunk_result: RenderedChunk = ray.get(task)
        except (RayActorError, ObjectLostError):
            self.dead_slots.add(slot)
            self.ready_slots.discard(slot)
            return None
        except RayTaskError as err:
            if isinstance(err.cause, DopeError):
                raise DopeError(str(err.cause)) from None
            raise
        self.stats.frames += len(chunk_result.frames)
        self.stats.busy_s += chunk_result.busy_s
        self.stats.frames_by_node[chunk_result.node] += len(chunk_result.frames)
        if self.trace:
            self.stats.rendered_at.extend(chunk_result.finished_at)
        return chunk_result

    def _replace_when_drained(self, slot: int, running: dict) -> None:
        """Replace the dead actor of `slot` once no chunk of it is outstanding: each of them fails or,
        when it finished before the actor died, still delivers its frames."""
        if slot not in self.dead_slots or any(s == slot for s, _ in running.values()):
            return
        self.dead_slots.discard(slot)
        if self.stats.replaced_actors >= REPLACEMENTS_PER_ACTOR * self.actor_count:
            raise DopeError(f"ray: {self.stats.replaced_actors} renderer actors died; see the Ray logs for why")
        log.warning("renderer actor %d died; its unfinished frames go back to the queue, a fresh actor starts", slot)
        ray.kill(self.actors[slot])
        self._start_actor(slot)
        self.stats.replaced_actors += 1
