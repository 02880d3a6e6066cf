"""The training loop: `train(config) -> TrainSummary`.

Reads top to bottom: distributed setup (torchrun: one process per device, `LOCAL_RANK` picks it),
data, network, optimiser/schedule, resume, then the loop (mixed precision, channels_last, gradient
clipping, checkpoints every `save_every` steps and at each epoch end, validation, TensorBoard).
Resume is exact: data order and augmentation depend only on (seed, epoch, index), and the
checkpoint holds the optimiser, schedule, scaler and RNG states.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from dope_stream.errors import DopeError
from dope_stream.geometry import map_to_pixel
from dope_stream.outputs import output_folder
from dope_stream.processes import loader_worker_init
from dope_stream.reader import LocalDataset, is_remote, open_dataset, stream_shards
from trainer.checkpoint import (
    ModelMeta, latest_checkpoint, network_outputs, read_checkpoint, remove_partial_checkpoints, save_checkpoint,
)
from trainer.config import TrainConfig
from trainer.data import EncoderSettings, EpochSampler, FrameEncoder, IterableSource, MapDataset, collate, raise_sample_error
from trainer.networks import NORMALIZATIONS, OFFSET_NETWORKS, STRIDE, build_network

log = logging.getLogger(__name__)

BELIEF_POSITIVE_WEIGHT = 20.0  # light loss: weight of a cell at a keypoint relative to background
AFFINITY_INSIDE_WEIGHT = 10.0  # affinity loss: weight of cells inside the corner disks
OFFSET_LOSS_WEIGHT = 1.0  # corner-offset L1 (in OFFSET_SCALE units) against the belief + affinity losses
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


def no_renderers() -> int:
    return 0


@dataclass
class DataPlan:
    train: torch.utils.data.Dataset
    sampler: EpochSampler | None  # None for iterable sources
    validation: MapDataset | None
    class_name: str
    cuboid: object
    renderer_cpus: Callable[[], int] = no_renderers  # CPU renderer processes the next epoch runs


def plan_data(config: TrainConfig, dist: Distributed) -> DataPlan:
    """Training source (local, remote shards or the live stream) and the fixed validation set."""
    if config.stream is not None:
        from trainer.streaming import stream_plan

        return stream_plan(config, dist)
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
    train_encoder = FrameEncoder(encoder_settings(config, class_name, reference.unit, train=True))
    train_local, held_out = (reference, None) if config.val_data or remote else split_validation(reference, config.val_fraction, config.seed)
    validation = validation_set(config, class_name, held_out)
    if remote:
        source = IterableSource(functools.partial(stream_shards, remote), train_encoder, dist.rank, dist.world_size)
        return DataPlan(source, None, validation, class_name, cuboid)
    train = MapDataset(train_local, train_encoder)
    sampler = EpochSampler(train, dist.world_size, dist.rank, shuffle=True, seed=config.seed)
    return DataPlan(train, sampler, validation, class_name, cuboid)


def validation_set(config: TrainConfig, class_name: str, held_out: LocalDataset | None = None) -> MapDataset | None:
    """The fixed validation set: --val_data from disk, else the held-out share of the training data."""
    samples = open_dataset(config.val_data, config.unit) if config.val_data else held_out
    if samples is None:
        return None
    return MapDataset(samples, FrameEncoder(encoder_settings(config, class_name, samples.unit, train=False)))


def encoder_settings(config: TrainConfig, class_name: str, unit, train: bool) -> EncoderSettings:
    return EncoderSettings(
        class_name=class_name, image_size=config.image_size, sigma=config.sigma,
        affinity_radius=config.affinity_radius, unit=unit, min_visibility=config.min_visibility,
        train=train and config.augment, rotation=config.rotation, scale_range=tuple(config.scale_range),
        seed=config.seed, offsets=config.net in OFFSET_NETWORKS, camera_effects=config.camera_effects,
    )


# --- losses and metrics ---------------------------------------------------------------------------


def stage_losses(net: str, stages, belief: torch.Tensor, affinity: torch.Tensor) -> torch.Tensor:
    """Sum over stages. dope: the reference MSE. light: positive-weighted binary cross-entropy on belief
    logits minus the target entropy (does not stall on sparse targets the way MSE does) +
    inside-weighted affinity MSE."""
    total = belief.new_zeros(())
    inside = (affinity.abs().sum(dim=1, keepdim=True) > 0).float()
    affinity_weight = 1.0 + (AFFINITY_INSIDE_WEIGHT - 1.0) * inside
    for belief_out, affinity_out in stages:
        belief_out, affinity_out = belief_out.float(), affinity_out.float()
        if net == "dope":
            total = total + F.mse_loss(belief_out, belief) + F.mse_loss(affinity_out, affinity)
            continue
        weight = 1.0 + (BELIEF_POSITIVE_WEIGHT - 1.0) * belief
        cross_entropy = F.binary_cross_entropy_with_logits(belief_out, belief, weight=weight, reduction="none")
        # Minus the target's own entropy: a binary KL divergence, zero for a perfect prediction.
        total = total + (cross_entropy - weight * _binary_entropy(belief)).mean()
        total = total + (affinity_weight * (affinity_out - affinity) ** 2).mean()
    return total


def network_loss(net: str, model: nn.Module, images: torch.Tensor, batch: dict, device: torch.device) -> torch.Tensor:
    """The loss of `net` on a batch: stage losses, plus the corner-offset L1 for offset networks."""
    belief, affinity = batch["belief"].to(device), batch["affinity"].to(device)
    if net not in OFFSET_NETWORKS:
        return stage_losses(net, model(images, logits=True), belief, affinity)
    stages, offsets = model(images, logits=True, offsets=True)
    return stage_losses(net, stages, belief, affinity) + OFFSET_LOSS_WEIGHT * offset_loss(
        offsets, batch["offsets"].to(device), batch["offset_weight"].to(device)
    )


def offset_loss(predicted: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean absolute offset error over the cells near a centroid (0 for images without objects)."""
    error = (weight * (predicted.float() - target).abs()).sum()
    return error / (weight.sum() * target.shape[1]).clamp(min=1.0)


def _binary_entropy(p: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy(p, p, reduction="none")


def decode_keypoints(belief: torch.Tensor) -> torch.Tensor:
    """(B, 9, h, w) belief -> (B, 9, 2) pixels: the argmax cell, refined per axis by the vertex of a
    parabola through the log of the peak and its two neighbours (exact for a Gaussian peak)."""
    batch, channels, height, width = belief.shape
    maps = belief.float().clamp(min=1e-6).log().reshape(batch * channels, height, width)
    peak = maps.reshape(batch * channels, -1).argmax(dim=-1)
    rows, cols = peak // width, peak % width
    index = torch.arange(batch * channels, device=belief.device)

    def refine(values: torch.Tensor, centre: torch.Tensor, size: int, along_cols: bool) -> torch.Tensor:
        before, after = (centre - 1).clamp(min=0), (centre + 1).clamp(max=size - 1)
        pick = (lambda c: values[index, rows, c]) if along_cols else (lambda r: values[index, r, cols])
        left, middle, right = pick(before), pick(centre), pick(after)
        curvature = left - 2 * middle + right
        offset = torch.where(curvature < -1e-6, 0.5 * (left - right) / curvature.clamp(max=-1e-6), torch.zeros_like(middle))
        inner = (centre > 0) & (centre < size - 1)
        return centre.float() + torch.where(inner, offset.clamp(-0.5, 0.5), torch.zeros_like(offset))

    cells = torch.stack([refine(maps, cols, width, True), refine(maps, rows, height, False)], dim=-1)
    pixels = map_to_pixel(cells.reshape(batch, channels, 2).cpu().numpy(), STRIDE)
    return torch.from_numpy(pixels).float()


def keypoint_errors(belief: torch.Tensor, keypoints: torch.Tensor, instances: torch.Tensor, image_size: int) -> list[float]:
    """Pixel distance from each decoded keypoint to the nearest true one of the same index, for
    true keypoints inside the crop (images without instances are skipped)."""
    decoded = decode_keypoints(belief)  # (B, 9, 2)
    errors = []
    for image in range(len(decoded)):
        count = int(instances[image])
        if count == 0:
            continue
        truth = keypoints[image, :count]  # (n, 9, 2)
        distance = (truth - decoded[image][None]).norm(dim=-1).min(dim=0).values  # (9,)
        inside = ((truth >= 0) & (truth <= image_size - 1)).all(dim=-1).any(dim=0)
        errors.extend(distance[inside].tolist())
    return errors


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


def set_threads(config: TrainConfig, device: torch.device, plan: "DataPlan") -> None:
    renderers = plan.renderer_cpus()
    threads = choose_threads(config, device, renderers)
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
        log.info("torch threads: %d (%d cores, %d renderer processes, %d loader workers)",
                 threads, available_cores(), renderers, config.workers)


# --- the loop -------------------------------------------------------------------------------------


def normalise(images: torch.Tensor, meta: ModelMeta, device: torch.device, channels_last: bool) -> torch.Tensor:
    mean = torch.tensor(meta.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(meta.std, device=device).view(1, 3, 1, 1)
    x = (images.to(device, non_blocking=True).float() / 255.0 - mean) / std
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


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


def train(config: TrainConfig) -> TrainSummary:
    dist = setup_distributed(config.device)
    output_folder(config.out, "--out")
    if dist.is_main:
        remove_partial_checkpoints(config.out)
    torch.manual_seed(config.seed)
    plan = plan_data(config, dist)
    mean, std = NORMALIZATIONS[config.normalization]
    network = build_network(config.net, config.stages, config.pretrained, config.vgg_weights)
    meta = ModelMeta(
        network=config.net, class_name=plan.class_name, cuboid=plan.cuboid, stages=network.num_stages,
        input_size=config.image_size, mean=mean, std=std, outputs=network_outputs(config.net),
    )
    network.to(dist.device)
    if config.channels_last:
        network.to(memory_format=torch.channels_last)
    model = network
    if dist.world_size > 1:
        model = nn.parallel.DistributedDataParallel(network, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
    per_epoch = steps_per_epoch(plan, config, dist.world_size)
    schedule_steps = per_epoch * config.epochs  # the schedule ignores max_steps, so a stop/resume matches
    total_steps = min(config.max_steps or schedule_steps, schedule_steps)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: learning_rate_factor(s, config.warmup_steps, schedule_steps))
    dtype = autocast_dtype(config, dist.device)
    scaler = torch.amp.GradScaler(dist.device.type, enabled=dtype == torch.float16)

    step, epoch, samples_done = 0, 0, 0
    found = latest_checkpoint(config.out) if config.resume else None
    if config.resume and found is None:
        log.warning("--resume: no checkpoint in %s, starting from scratch", config.out)
    if found is not None:
        state = read_checkpoint(found)
        network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        step, epoch, samples_done = state["step"], state["epoch"], state["samples_done"]
        log.info("resumed from %s (step %d, epoch %d)", found, step, epoch)

    writer = _tensorboard(config.out) if dist.is_main else None
    summary = TrainSummary(steps=step)

    def checkpoint(at_epoch: int, done: int) -> None:
        if plan.sampler is not None and done >= plan.sampler.num_samples:
            # A finished epoch is recorded as the start of the next, as the epoch-end checkpoint of the same
            # step records it: a kill between the two writes then resumes to the same state.
            at_epoch, done = at_epoch + 1, 0
        if dist.is_main:
            summary.checkpoint = save_checkpoint(
                {
                    "meta": meta.to_dict(), "model": network.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "epoch": at_epoch,
                    "samples_done": done, "step": step, "rng": torch.get_rng_state(),
                    "config": config.model_dump(mode="json"),
                },
                config.out, config.keep_last,
            )

    while epoch < config.epochs and step < total_steps:
        set_threads(config, dist.device, plan)
        loader = _loader(plan, config, epoch, samples_done)
        progress = _progress(dist, per_epoch, samples_done // config.batch_size, epoch)
        tick = time.perf_counter()
        for batch in _batches(loader, progress):
            batch_ready = time.perf_counter()
            summary.wait_s += batch_ready - tick
            loss = _optimisation_step(model, batch, meta, config, dist.device, dtype, optimizer, scaler)
            scheduler.step()
            step += 1
            samples_done += len(batch["key"])
            summary.losses.append(loss.item())
            summary.keys_seen.extend(batch["key"])
            summary.images += len(batch["key"])
            now = time.perf_counter()
            summary.train_s += now - batch_ready
            images_per_s = len(batch["key"]) * dist.world_size / max(now - tick, 1e-9)
            tick = now
            if progress is not None:
                progress.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{images_per_s:.1f}")
                progress.update(1)
            if writer is not None and step % config.log_every == 0:
                writer.add_scalar("train/loss", loss.item(), step)
                writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
                writer.add_scalar("train/images_per_s", images_per_s, step)
            if step % config.save_every == 0 or step >= total_steps:
                checkpoint(epoch, samples_done)
                tick = time.perf_counter()  # writing a checkpoint is not waiting for data
            if step >= total_steps or (plan.sampler is None and samples_done >= per_epoch * config.batch_size):
                break  # iterable sources (remote shards) may not end: an epoch is per_epoch steps
        if progress is not None:
            progress.close()
        if plan.sampler is not None and samples_done < plan.sampler.num_samples:
            break  # stopped mid-epoch by max_steps; the checkpoint above records the position
        epoch, samples_done = epoch + 1, 0
        checkpoint(epoch, 0)
        if plan.validation is not None and dist.is_main and (epoch % config.val_every == 0 or epoch == config.epochs):
            result = validate(network, plan.validation, meta, config, dist.device, dtype)
            summary.validation.append({"step": step, **result})
            log.info("epoch %d: validation loss %.4f, keypoint error %.2f px", epoch, result["loss"], result["keypoint_error_px"])
            if writer is not None:
                writer.add_scalar("val/loss", result["loss"], step)
                writer.add_scalar("val/keypoint_error_px", result["keypoint_error_px"], step)
                _log_belief_images(writer, network, plan.validation, meta, config, dist.device, step)
    summary.steps = step
    if writer is not None:
        writer.close()
    return summary


def _optimisation_step(model: nn.Module, batch: dict, meta: ModelMeta, config: TrainConfig, device: torch.device,
                       dtype: torch.dtype | None, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> torch.Tensor:
    """Forward (mixed precision), loss over all stages, backward, clipped step; returns the loss."""
    model.train()
    images = normalise(batch["image"], meta, device, config.channels_last)
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        loss = network_loss(config.net, model, images, batch, device)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if config.grad_clip > 0:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def _loader(plan: DataPlan, config: TrainConfig, epoch: int, samples_done: int) -> DataLoader:
    if plan.sampler is not None:
        plan.sampler.set_position(epoch, samples_done)
    else:
        plan.train.epoch = epoch
    # Spawned workers: the live stream's Ray connection cannot survive a fork.
    context = "spawn" if config.stream is not None and config.workers > 0 else None
    return DataLoader(
        plan.train, batch_size=config.batch_size, sampler=plan.sampler, num_workers=config.workers,
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


@torch.no_grad()
def validate(network: nn.Module, dataset: MapDataset, meta: ModelMeta, config: TrainConfig,
             device: torch.device, dtype: torch.dtype | None) -> dict:
    """Mean loss and mean keypoint error (px, argmax + 3x3 refinement) over the validation set."""
    network.eval()
    losses, errors = [], []
    loader = DataLoader(dataset, batch_size=config.batch_size, num_workers=min(config.workers, 2), collate_fn=collate,
                        worker_init_fn=functools.partial(loader_worker_init, os.getpid()))
    for batch in map(raise_sample_error, loader):
        images = normalise(batch["image"], meta, device, config.channels_last)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            losses.append(network_loss(config.net, network, images, batch, device).item())
            belief = network(images, logits=True)[-1][0].float()
        errors.extend(keypoint_errors(belief if config.net == "dope" else belief.sigmoid(), batch["keypoints"], batch["instances"], config.image_size))
    return {"loss": float(np.mean(losses)), "keypoint_error_px": float(np.mean(errors)) if errors else float("nan")}


@torch.no_grad()
def _log_belief_images(writer, network, dataset: MapDataset, meta: ModelMeta, config: TrainConfig, device, step: int) -> None:
    """Image, predicted and target belief (max over the 9 maps) of the first validation sample."""
    sample = raise_sample_error(dataset[0])
    images = normalise(sample["image"][None], meta, device, config.channels_last)
    predicted = network(images)[-1][0][0].float().amax(dim=0, keepdim=True).clamp(0, 1).cpu()
    target = sample["belief"].amax(dim=0, keepdim=True)
    writer.add_image("val/image", sample["image"], step)
    writer.add_image("val/belief_predicted", predicted, step)
    writer.add_image("val/belief_target", target, step)
