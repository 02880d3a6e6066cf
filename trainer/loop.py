"""The training loop: `train(config) -> TrainSummary`.

`train` reads top to bottom: `start_run` (distributed setup: torchrun, one process per device,
`LOCAL_RANK` picks it; data; network; optimiser/schedule), `resume`, then one `train_epoch` after
another (mixed precision, channels_last, gradient clipping, checkpoints every `save_every` steps),
each followed by `end_epoch` (checkpoint, validation, TensorBoard). Per-network behaviour (loss,
output activation, stride) comes from the network's `trainer.networks.NetworkSpec`.
Resume is exact: data order and augmentation depend only on (seed, epoch, index), and the
checkpoint holds the optimiser, schedule, scaler and RNG states.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from dope_stream.errors import DopeError
from dope_stream.outputs import output_folder
from dope_stream.processes import loader_worker_init
from trainer.checkpoint import latest_checkpoint, read_checkpoint, remove_partial_checkpoints, save_checkpoint
from trainer.config import TrainConfig
from trainer.data import DataPlan, class_symmetries, collate, normalise, raise_sample_error
from trainer.meta import NORMALIZATIONS, ModelMeta
from trainer.networks import NetworkSpec, build_network, network_spec
from trainer.plan import plan_data
from trainer.validation import log_belief_images, validate

log = logging.getLogger(__name__)

MIN_LR_FRACTION = 0.05


@dataclass
class TrainSummary:
    steps: int
    losses: list[float] = field(default_factory=list)  # training loss per step (this run)
    validation: list[dict] = field(default_factory=list)  # {"step", "loss", "keypoint_error_px"}
    keys_seen: list[str] = field(default_factory=list)  # sample keys trained by this rank (this run)
    checkpoint: Path | None = None
    images: int = 0  # images trained by this rank (this run)
    wait_s: float = 0.0  # time spent waiting for the next batch
    train_s: float = 0.0  # time spent in forward/backward/step

    @property
    def wait_share(self) -> float:
        return self.wait_s / max(self.wait_s + self.train_s, 1e-9)


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


# --- setup ----------------------------------------------------------------------------------------


def setup_distributed(device_option: str) -> Distributed:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; each rank trains on its own device."""
    wants_cuda = device_option == "cuda" or (device_option == "auto" and torch.cuda.is_available())
    if wants_cuda and not torch.cuda.is_available():
        raise DopeError("option 'device': cuda requested but no CUDA device is available")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}" if wants_cuda else "cpu")
    if world_size == 1:
        return Distributed(0, 1, device)
    if wants_cuda:
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if wants_cuda else "gloo")
    return Distributed(torch.distributed.get_rank(), world_size, device)


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if not config.amp or (device.type == "cpu" and not config.cpu_bf16):
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


# --- CPU threads ----------------------------------------------------------------------------------


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def choose_threads(config: TrainConfig, device: torch.device, renderer_cpus: int) -> int | None:
    """torch threads for the next epoch (None: leave torch's choice, on GPUs).

    torch's OpenMP threads wait for each other at every operator: when renderer processes take
    cores, one descheduled thread stalls the rest (measured on 2 cores with one busy: 2 threads 10.7
    s/step, 1 thread 3.4 s/step). So the trainer takes the cores the renderers leave, each DDP rank
    its share."""
    if device.type != "cpu":
        return None
    if config.threads:
        return config.threads
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    return max(1, (available_cores() - renderer_cpus) // world_size)


def set_threads(config: TrainConfig, device: torch.device, plan: DataPlan) -> None:
    renderers = plan.renderer_cpus()
    threads = choose_threads(config, device, renderers)
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
        log.info("torch threads: %d (%d cores, %d renderer processes, %d loader workers)",
                 threads, available_cores(), renderers, config.loader_workers)


# --- schedule ---------------------------------------------------------------------------------------


def learning_rate_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to MIN_LR_FRACTION at `total` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress))


def steps_per_epoch(plan: DataPlan, config: TrainConfig, world_size: int) -> int:
    if plan.sampler is not None:
        return math.ceil(plan.sampler.num_samples / config.batch_size)
    frames = config.stream_frames_per_epoch or plan.train.frames_per_epoch
    if frames is None:
        raise DopeError("option 'stream_frames_per_epoch': needed for remote shards (their length is unknown)")
    # drop_last: an iterable epoch is the number of full batches its frames make
    return max(1, frames // (config.batch_size * world_size))


# --- the loop -------------------------------------------------------------------------------------


@dataclass
class Run:
    """One training process's state: what it trains, how, and how far it got."""

    config: TrainConfig
    dist: Distributed
    plan: DataPlan
    spec: NetworkSpec
    network: nn.Module  # the module whose weights are saved
    model: nn.Module  # what runs the steps: `network`, or its DDP wrapper
    meta: ModelMeta
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    dtype: torch.dtype | None  # autocast dtype, None: full precision
    per_epoch: int  # optimizer steps per epoch
    total_steps: int  # where this run stops (max_steps or the end of the schedule)
    summary: TrainSummary
    writer: object | None  # TensorBoard SummaryWriter of the main process
    step: int = 0
    epoch: int = 0
    samples_done: int = 0  # samples of the current epoch already trained by this rank


def train(config: TrainConfig) -> TrainSummary:
    run = start_run(config)
    resume(run)
    while run.epoch < config.epochs and run.step < run.total_steps:
        if not train_epoch(run):
            break  # stopped mid-epoch by max_steps; the last checkpoint records the position
        end_epoch(run)
    run.summary.steps = run.step
    if run.writer is not None:
        run.writer.close()
    return run.summary


def start_run(config: TrainConfig) -> Run:
    """Devices, data, network (seeded), optimiser and schedule of a fresh run."""
    dist = setup_distributed(config.device)
    output_folder(config.out, "--out")
    if dist.is_main:
        remove_partial_checkpoints(config.out)
    torch.manual_seed(config.seed)
    plan = plan_data(config, dist.rank, dist.world_size)
    spec = network_spec(config.net)
    network, model, meta = _network(config, spec, dist, plan)
    per_epoch = steps_per_epoch(plan, config, dist.world_size)
    schedule_steps = per_epoch * config.epochs  # the schedule ignores max_steps, so a stop/resume matches
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: learning_rate_factor(s, config.warmup_steps, schedule_steps))
    dtype = autocast_dtype(config, dist.device)
    return Run(
        config, dist, plan, spec, network, model, meta, optimizer, scheduler,
        torch.amp.GradScaler(dist.device.type, enabled=dtype == torch.float16), dtype, per_epoch,
        min(config.max_steps or schedule_steps, schedule_steps), TrainSummary(steps=0),
        _tensorboard(config.out) if dist.is_main else None,
    )


def _network(config: TrainConfig, spec: NetworkSpec, dist: Distributed, plan: DataPlan) -> tuple[nn.Module, nn.Module, ModelMeta]:
    """(the network on its device, what runs the steps: it or its DDP wrapper, its metadata)."""
    network = build_network(config.net, config.stages, config.pretrained, config.vgg_weights)
    mean, std = NORMALIZATIONS[config.normalization or spec.normalization]
    symmetries = class_symmetries(config, plan.class_name)
    meta = ModelMeta(
        network=config.net, class_name=plan.class_name, cuboid=plan.cuboid, stages=network.num_stages,
        input_size=config.image_size, mean=mean, std=std, stride=spec.stride, outputs=spec.outputs,
        offset_scale=spec.offset_scale, map_convention=config.map_convention,
        symmetries=symmetries.to_dict() if symmetries.symmetric else None,
        refine_object_size=config.object_crop_size if config.object_crops > 0 else None,
    )
    network.to(dist.device)
    if config.channels_last:
        network.to(memory_format=torch.channels_last)
    if dist.world_size == 1:
        return network, network, meta
    device_ids = [dist.device.index] if dist.device.type == "cuda" else None
    return network, nn.parallel.DistributedDataParallel(network, device_ids=device_ids), meta


def resume(run: Run) -> None:
    """With --resume, continue from the latest checkpoint of the run folder (if there is one)."""
    if not run.config.resume:
        return
    found = latest_checkpoint(run.config.out)
    if found is None:
        log.warning("--resume: no checkpoint in %s, starting from scratch", run.config.out)
        return
    state = read_checkpoint(found)
    run.network.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"])
    run.step, run.epoch, run.samples_done = state["step"], state["epoch"], state["samples_done"]
    log.info("resumed from %s (step %d, epoch %d)", found, run.step, run.epoch)


def save(run: Run) -> None:
    """A checkpoint of the current position (main process only)."""
    if not run.dist.is_main:
        return
    epoch, samples_done = run.epoch, run.samples_done
    if run.plan.sampler is not None and samples_done >= run.plan.sampler.num_samples:
        # A finished epoch is recorded as the start of the next, as the epoch-end checkpoint of the same
        # step records it: a kill between the two writes then resumes to the same state.
        epoch, samples_done = epoch + 1, 0
    run.summary.checkpoint = save_checkpoint(
        {
            "meta": run.meta.to_dict(), "model": run.network.state_dict(), "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(), "epoch": epoch,
            "samples_done": samples_done, "step": run.step, "rng": torch.get_rng_state(),
            "config": run.config.model_dump(mode="json"),
        },
        run.config.out, run.config.keep_last,
    )


def train_epoch(run: Run) -> bool:
    """Train the rest of the current epoch; False when max_steps stopped it before its end."""
    config = run.config
    set_threads(config, run.dist.device, run.plan)
    loader = _loader(run.plan, config, run.epoch, run.samples_done)
    progress = _progress(run.dist, run.per_epoch, run.samples_done // config.batch_size, run.epoch)
    tick = time.perf_counter()
    for batch in _batches(loader, progress):
        batch_ready = time.perf_counter()
        run.summary.wait_s += batch_ready - tick
        loss = _optimisation_step(run, batch)
        now = time.perf_counter()
        run.summary.train_s += now - batch_ready
        _report_step(run, progress, loss, len(batch["key"]) * run.dist.world_size / max(now - tick, 1e-9))
        tick = now
        if run.step % config.save_every == 0 or run.step >= run.total_steps:
            save(run)
            tick = time.perf_counter()  # writing a checkpoint is not waiting for data
        if run.step >= run.total_steps or (run.plan.sampler is None and run.samples_done >= run.per_epoch * config.batch_size):
            break  # iterable sources (remote shards) may not end: an epoch is per_epoch steps
    if progress is not None:
        progress.close()
    return run.plan.sampler is None or run.samples_done >= run.plan.sampler.num_samples


def end_epoch(run: Run) -> None:
    """Checkpoint the epoch's end; validate every val_every epochs and after the last."""
    run.epoch, run.samples_done = run.epoch + 1, 0
    save(run)
    config = run.config
    if run.plan.validation is None or not run.dist.is_main:
        return
    if run.epoch % config.val_every and run.epoch != config.epochs:
        return
    result = validate(run.network, run.plan.validation, run.meta, config, run.dist.device, run.dtype)
    run.summary.validation.append({"step": run.step, **result})
    log.info("epoch %d: validation loss %.4f, keypoint error %.2f px (%.0f%% of keypoints found)",
             run.epoch, result["loss"], result["keypoint_error_px"], 100 * result["keypoints_found"])
    if run.writer is not None:
        for name in ("loss", "keypoint_error_px", "keypoints_found"):
            run.writer.add_scalar(f"val/{name}", result[name], run.step)
        log_belief_images(run.writer, run.network, run.plan.validation, run.meta, config, run.dist.device, run.step)


def _report_step(run: Run, progress, loss: torch.Tensor, images_per_s: float) -> None:
    """Summary, progress bar and TensorBoard after one step."""
    if progress is not None:
        progress.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{images_per_s:.1f}")
        progress.update(1)
    if run.writer is not None and run.step % run.config.log_every == 0:
        run.writer.add_scalar("train/loss", loss.item(), run.step)
        run.writer.add_scalar("train/lr", run.scheduler.get_last_lr()[0], run.step)
        run.writer.add_scalar("train/images_per_s", images_per_s, run.step)


def _optimisation_step(run: Run, batch: dict) -> torch.Tensor:
    """Forward (mixed precision), loss over all stages, backward, clipped step, schedule; returns the loss."""
    config, device, dtype = run.config, run.dist.device, run.dtype
    run.model.train()
    images = normalise(batch["image"], run.meta, device, config.channels_last)
    targets = run.spec.targets(batch, device)
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        loss = run.spec.loss(run.spec.forward(run.model, images), targets)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if config.grad_clip > 0:
        run.scaler.unscale_(run.optimizer)
        nn.utils.clip_grad_norm_(run.model.parameters(), config.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    run.step += 1
    run.samples_done += len(batch["key"])
    run.summary.losses.append(loss.item())
    run.summary.keys_seen.extend(batch["key"])
    run.summary.images += len(batch["key"])
    return loss.detach()


def _loader(plan: DataPlan, config: TrainConfig, epoch: int, samples_done: int) -> DataLoader:
    # A resumed epoch continues where the killed run stopped (an iterable source passes over the rest).
    position = plan.sampler if plan.sampler is not None else plan.train
    position.set_position(epoch, samples_done)
    # Spawned workers: the live stream's Ray connection cannot survive a fork.
    context = "spawn" if config.stream is not None and config.loader_workers > 0 else None
    return DataLoader(
        plan.train, batch_size=config.batch_size, sampler=plan.sampler, num_workers=config.loader_workers,
        drop_last=plan.sampler is None, persistent_workers=False, pin_memory=torch.cuda.is_available(),
        multiprocessing_context=context, worker_init_fn=functools.partial(loader_worker_init, os.getpid()), collate_fn=collate,
    )


def _batches(loader: DataLoader, progress) -> Iterator[dict]:
    """The loader's batches; a bad sample raises its DopeError after the progress bar is closed, so
    the error gets a line of its own."""
    try:
        yield from map(raise_sample_error, loader)
    finally:
        if progress is not None:
            progress.close()


def _progress(dist: Distributed, total: int, initial: int, epoch: int):
    if not dist.is_main:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=f"epoch {epoch}", unit="step", dynamic_ncols=True)


def _tensorboard(run_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(run_dir / "tensorboard"))
