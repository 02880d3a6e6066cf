"""Validation: mean loss, and the keypoint error of the decoder users deploy (`trainer.decode`,
the one `infer` runs), so the tracked `keypoint_error_px` measures what inference will do."""

from __future__ import annotations

import functools
import os

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from dope_stream.geometry import NUM_KEYPOINTS
from trainer.config import TrainConfig
from dope_stream.processes import loader_worker_init
from trainer.data import MapDataset, collate, normalise, raise_sample_error
from trainer.decode import DecodeSettings, decode_network_maps
from trainer.meta import ModelMeta
from trainer.networks import network_spec


def keypoint_errors(belief: np.ndarray, affinity: np.ndarray, offsets: np.ndarray | None, keypoints: np.ndarray,
                    instances: np.ndarray, image_size: int, meta: ModelMeta,
                    settings: DecodeSettings = DecodeSettings()) -> tuple[list[float], int]:
    """(pixel errors, keypoints missed) of a batch: for every true keypoint inside the crop, the
    distance to the nearest keypoint of the same index among the decoded objects; a true keypoint
    with no decoded one of its index is missed (images without instances are skipped)."""
    errors, missed = [], 0
    for image in range(len(belief)):
        count = int(instances[image])
        if count == 0:
            continue
        image_offsets = None if offsets is None else offsets[image]
        objects = decode_network_maps(belief[image], affinity[image], image_offsets, meta.stride, settings, meta.offset_scale,
                                     meta.map_convention)
        decoded = np.stack([o.uv for o in objects]) if objects else np.empty((0, NUM_KEYPOINTS, 2))
        truth = keypoints[image, :count]  # (n, 9, 2)
        inside = ((truth >= 0) & (truth <= image_size - 1)).all(axis=-1)  # (n, 9)
        # (n, m, 9) true instances x decoded objects, NaN where a keypoint was not found; fmin skips
        # NaN, and a keypoint index found in no object stays at the initial infinity.
        distance = np.linalg.norm(truth[:, None] - decoded[None], axis=-1)
        nearest = np.fmin.reduce(distance, axis=1, initial=np.inf)
        found = np.isfinite(nearest)
        errors.extend(nearest[inside & found].tolist())
        missed += int((inside & ~found).sum())
    return errors, missed


@torch.no_grad()
def validate(network: nn.Module, dataset: MapDataset, meta: ModelMeta, config: TrainConfig,
             device: torch.device, dtype: torch.dtype | None) -> dict:
    """Mean loss, mean keypoint error (px, the deployed decoder) and the share of keypoints it found."""
    network.eval()
    spec = network_spec(meta.network)
    losses, errors, missed = [], [], 0
    loader = DataLoader(
        dataset, batch_size=config.batch_size, num_workers=min(config.loader_workers, 2), collate_fn=collate,
        worker_init_fn=functools.partial(loader_worker_init, os.getpid()),
    )
    for batch in map(raise_sample_error, loader):
        images = normalise(batch["image"], meta, device, config.channels_last)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            outputs = spec.forward(network, images)
        losses.append(spec.loss(outputs, spec.targets(batch, device)).item())
        belief, affinity = outputs.stages[-1]
        offsets = None if outputs.offsets is None else outputs.offsets.float().cpu().numpy()
        batch_errors, batch_missed = keypoint_errors(
            spec.activation(belief.float()).cpu().numpy(), affinity.float().cpu().numpy(), offsets,
            batch["keypoints"].numpy(), batch["instances"].numpy(), config.image_size, meta,
        )
        errors.extend(batch_errors)
        missed += batch_missed
    return {
        "loss": float(np.mean(losses)),
        "keypoint_error_px": float(np.mean(errors)) if errors else float("nan"),
        "keypoints_found": len(errors) / max(len(errors) + missed, 1),
    }


@torch.no_grad()
def log_belief_images(writer, network: nn.Module, dataset: MapDataset, meta: ModelMeta, config: TrainConfig,
                      device: torch.device, step: int) -> None:
    """Image, predicted and target belief (max over the 9 maps) of the first validation sample."""
    sample = raise_sample_error(dataset[0])
    images = normalise(sample["image"][None], meta, device, config.channels_last)
    predicted = network(images)[-1][0][0].float().amax(dim=0, keepdim=True).clamp(0, 1).cpu()
    target = sample["belief"].amax(dim=0, keepdim=True)
    writer.add_image("val/image", sample["image"], step)
    writer.add_image("val/belief_predicted", predicted, step)
    writer.add_image("val/belief_target", target, step)
