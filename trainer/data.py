"""Training data: raw samples (shards, folders, the live stream) -> tensors with targets.

Two sources, one encoder (`FrameEncoder`):
- `MapDataset`: random access over local shards/folders (`dope_stream.reader.LocalDataset`), with
  `EpochSampler` (a DistributedSampler: each rank draws its own share of every epoch). The sampler
  yields `epoch * len + index`, so the augmentation seed of each sample depends only on
  (seed, epoch, index) and a resumed run skips already-trained batches without loading them.
- `IterableSource`: any iterable of raw sample dicts (remote shards, the live stream); sample i of
  the iterable goes to consumer i mod (ranks x workers), so every rank and worker sees different
  frames. A resumed epoch passes over the samples it trained before the kill (`set_position`), so
  it ends where the uninterrupted epoch ends: the live stream then renders (and writes) every shard
  the uninterrupted run would have, instead of stopping after the shards it read back.

Each item is a dict: `image` (3, S, S) uint8 RGB (normalised on the device), `belief` (9, S/8, S/8),
`affinity` (16, S/8, S/8), with `EncoderSettings.offset_scale` (offset networks) also `offsets`
(16, S/8, S/8) and `offset_weight` (1, S/8, S/8) (see `trainer.targets.centre_offset_maps`),
`keypoints` (MAX_INSTANCES, 9, 2) pixels in the crop, `instances` (the count of valid rows), `key`.

Bad input in a DataLoader worker: torch re-raises a worker's exception in the trainer with the
worker's whole traceback in its message. So both sources catch DopeError where a sample is encoded
and hand on `{ERROR_KEY: message}` instead; `collate` turns a batch holding one into
`{ERROR_KEY: message}` and `raise_sample_error` (called on every batch by the loop) raises it as
the one-line DopeError it was, with or without workers.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, IterableDataset, default_collate, get_worker_info

from dope_stream.errors import DopeError
from dope_stream.geometry import DEFAULT_MAP_CONVENTION, Cuboid, Pose, projected_cuboid, resized_pixels
from dope_stream.reader import Frame, LocalDataset, ObjectAnnotation, Unit, decode_sample, open_dataset, select_objects
from dope_stream.symmetry import NO_SYMMETRY, Symmetries, read_symmetries
from trainer.augment import apply_transform, build_transform
from trainer.crops import ZoomCrop
from trainer.config import TrainConfig
from trainer.meta import ModelMeta
from trainer.networks import network_spec
from trainer.targets import affinity_maps, belief_maps, centre_offset_maps

MAX_INSTANCES = 8  # keypoint rows kept per image for the validation error
OFFSET_RADIUS = 2.0  # map cells around a centroid that learn its corner offsets (the decoder reads the peak cell)
OBJECT_CROP_STREAM = 1  # seeds the object-crop draws apart from albumentations' (same sample seed)
ERROR_KEY = "error"  # a sample or batch that stands for the DopeError its input raised


def collate(samples: list[dict]) -> dict:
    """default_collate, except that a batch with a bad sample is that sample's error."""
    for sample in samples:
        if ERROR_KEY in sample:
            return sample
    return default_collate(samples)


def raise_sample_error(batch: dict) -> dict:
    """The batch itself, or the DopeError one of its samples raised."""
    if ERROR_KEY in batch:
        raise DopeError(batch[ERROR_KEY])
    return batch


@dataclass(frozen=True)
class EncoderSettings:
    class_name: str
    image_size: int
    sigma: float
    affinity_radius: float
    unit: Unit = "auto"
    min_visibility: float = 0.0
    train: bool = True
    rotation: float = 30.0
    scale_range: tuple[float, float] = (0.75, 1.25)
    seed: int = 0
    stride: int = 8  # the network's output stride (map cell size in pixels)
    offset_scale: float | None = None  # offset networks: also their corner-offset targets, in map cells / this
    object_crops: float = 0.0  # share of frames cut around one object at object_crop_size (trainer.crops)
    object_crop_size: int = 160
    frame_height: int | None = None  # full frames (not object crops) shrunk to this height; None: as rendered
    camera_effects: bool = False  # sensor noise, blur, exposure, white balance, JPEG, vignetting (trainer.augment)
    map_convention: str = DEFAULT_MAP_CONVENTION  # dope_stream.geometry: where a keypoint sits on the maps
    cuboid: Cuboid | None = None  # the class's cuboid, needed to relabel symmetric objects
    symmetries: Symmetries | None = None  # None: keypoints as annotated


def sample_seed(*parts: int) -> int:
    """A 32-bit seed mixing integers (stable across processes, unlike hash())."""
    return zlib.crc32(np.asarray(parts, dtype=np.int64).tobytes())


class FrameEncoder:
    """Raw sample -> augmented image and its belief/affinity targets."""

    def __init__(self, settings: EncoderSettings):
        self.settings = settings
        self.transform = build_transform(
            settings.image_size, settings.train, settings.rotation, settings.scale_range, settings.camera_effects
        )

    def __call__(self, sample: dict, seed: int) -> dict:
        try:
            return self._encode(sample, seed)
        except DopeError as err:
            return {ERROR_KEY: str(err)}

    def _encode(self, sample: dict, seed: int) -> dict:
        s = self.settings
        frame = decode_sample(sample, s.unit)
        objects = select_objects(frame, s.class_name, s.min_visibility)
        keypoints = labelled_keypoints(frame, objects, s.cuboid, s.symmetries)
        image, keypoints = self._object_crop(frame.image, keypoints, seed)
        image, keypoints = apply_transform(self.transform, image, keypoints, seed, s.image_size, frame.source)
        map_size = (s.image_size // s.stride, s.image_size // s.stride)
        padded = np.zeros((MAX_INSTANCES, 9, 2), np.float32)
        count = min(len(keypoints), MAX_INSTANCES)
        padded[:count] = keypoints[:count]
        item = {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "belief": torch.from_numpy(belief_maps(keypoints, map_size, s.stride, s.sigma, s.map_convention)),
            "affinity": torch.from_numpy(affinity_maps(keypoints, map_size, s.stride, s.affinity_radius, s.map_convention)),
            "keypoints": torch.from_numpy(padded),
            "instances": count,
            "key": frame.key,
        }
        if s.offset_scale is not None:
            offsets, weight = centre_offset_maps(keypoints, map_size, s.stride, OFFSET_RADIUS, s.offset_scale, s.map_convention)
            item["offsets"], item["offset_weight"] = torch.from_numpy(offsets), torch.from_numpy(weight)
        return item


    def _object_crop(self, image: np.ndarray, keypoints: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """With probability `object_crops` (training only), the crop around one of the instances at
        the refinement scale, its centre shifted by up to a tenth of the object; else the full frame."""
        s = self.settings
        rng = np.random.default_rng([seed, OBJECT_CROP_STREAM])
        if not s.train or len(keypoints) == 0 or rng.random() >= s.object_crops:
            return self._full_frame(image, keypoints)
        chosen = keypoints[rng.integers(len(keypoints)), :8]
        shift = rng.uniform(-0.1, 0.1, size=2) * s.object_crop_size
        crop = ZoomCrop.around(chosen, s.object_crop_size, (s.image_size, s.image_size), shift)
        return crop.cut(image), crop.to_crop(keypoints)

    def _full_frame(self, image: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The frame shrunk to `frame_height` when it is taller (object crops are cut from the
        rendered pixels, full frames keep the scale the network sees them at)."""
        height, width = image.shape[:2]
        target = self.settings.frame_height
        if target is None or height <= target:
            return image, keypoints
        size = (max(int(round(width * target / height)), 1), target)
        scale = np.array(size, dtype=np.float64) / (width, height)
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA), resized_pixels(keypoints, scale)


def labelled_keypoints(frame: Frame, objects: list[ObjectAnnotation], cuboid: Cuboid | None,
                       symmetries: Symmetries | None) -> np.ndarray:
    """(N, 9, 2) training keypoints: as annotated, or for a symmetric class projected from each
    instance's canonical pose, so the same view always gets the same corner labels."""
    if not objects:
        return np.zeros((0, 9, 2))
    if symmetries is None:
        return np.stack([o.projected_cuboid for o in objects])
    if frame.intrinsics is None or any(o.location is None or o.quaternion_xyzw is None for o in objects):
        raise DopeError(f"{frame.source}: a symmetric class needs camera_data and each instance's location and quaternion_xyzw")
    poses = [symmetries.canonical(Pose.from_quaternion_xyzw(o.quaternion_xyzw, o.location)) for o in objects]
    return np.stack([projected_cuboid(cuboid, pose, frame.intrinsics) for pose in poses])


class MapDataset(Dataset):
    """Local samples; index `epoch * len + i` means sample i augmented for that epoch."""

    def __init__(self, samples: LocalDataset, encoder: FrameEncoder):
        self.samples = samples
        self.encoder = encoder

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        epoch, i = divmod(index, len(self.samples))
        return self.encoder(self.samples[i], sample_seed(self.encoder.settings.seed, epoch, i))


class EpochSampler(DistributedSampler):
    """DistributedSampler that tags indices with the epoch and can skip the batches already trained."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, shuffle: bool, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.skip = 0

    def set_position(self, epoch: int, samples_done: int) -> None:
        self.set_epoch(epoch)
        self.skip = samples_done

    def __iter__(self) -> Iterator[int]:
        offset = self.epoch * len(self.dataset)
        indices = list(super().__iter__())[self.skip:]
        return iter(offset + i for i in indices)

    def __len__(self) -> int:
        return self.num_samples - self.skip


class IterableSource(IterableDataset):
    """Raw samples from `open_samples()` (called once per worker), split across ranks and workers
    into batches of `batch_size`. `split=False`: the source splits by itself, like the live stream;
    then `open_samples(worker)` gives that DataLoader worker's share."""

    def __init__(self, open_samples: Callable[..., Iterable[dict]], encoder: FrameEncoder, rank: int, world_size: int,
                 batch_size: int, split: bool = True):
        self.open_samples = open_samples
        self.encoder = encoder
        self.rank = rank
        self.world_size = world_size
        self.batch_size = batch_size
        self.split = split
        self.epoch = 0
        self.samples_done = 0  # of this rank, in the current epoch (a resumed run)
        self.frames_per_epoch: int | None = None  # all ranks together; None: unknown

    def set_position(self, epoch: int, samples_done: int) -> None:
        """The next pass is `epoch`, of which this rank trained `samples_done` samples before."""
        self.epoch, self.samples_done = epoch, samples_done

    def __iter__(self) -> Iterator[dict]:
        worker = get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker else (1, 0)
        # The DataLoader takes whole batches from its workers in turn, worker 0 first. After b trained
        # batches, worker w plays the part of worker (w + b) mod workers and passes over that part's
        # trained batches: the resumed epoch is the rest of the uninterrupted one, batch for batch.
        batches_done = self.samples_done // self.batch_size
        part = (worker_id + batches_done) % workers
        trained = len(range(part, batches_done, workers)) * self.batch_size
        consumer = self.rank * workers + part  # also salts the augmentation
        try:
            if self.split:
                numbered = enumerate(self.open_samples())
                mine = ((p, s) for p, s in numbered if p % (self.world_size * workers) == consumer)
            else:
                mine = enumerate(self.open_samples(part))
            for count, (position, sample) in enumerate(mine):
                if count >= trained:
                    yield self.encoder(sample, sample_seed(self.encoder.settings.seed, self.epoch, consumer, position))
        except DopeError as err:  # the source itself failed (an unreadable shard, the stream)
            yield {ERROR_KEY: str(err)}


def normalise(images: torch.Tensor, meta: ModelMeta, device: torch.device, channels_last: bool) -> torch.Tensor:
    """uint8 images -> the network input on `device`: (x / 255 - mean) / std."""
    mean = torch.tensor(meta.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(meta.std, device=device).view(1, 3, 1, 1)
    x = (images.to(device, non_blocking=True).float() / 255.0 - mean) / std
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


# --- what a run trains and validates on --------------------------------------------------------------


def no_renderers() -> int:
    return 0


@dataclass
class DataPlan:
    train: torch.utils.data.Dataset
    sampler: EpochSampler | None  # None for iterable sources
    validation: MapDataset | None
    class_name: str
    cuboid: Cuboid | None
    renderer_cpus: Callable[[], int] = no_renderers  # CPU renderer processes the next epoch runs


def validation_set(
    config: TrainConfig, class_name: str, cuboid: Cuboid | None, held_out: LocalDataset | None = None
) -> MapDataset | None:
    """The fixed validation set: --val_data from disk, else the held-out share of the training data."""
    samples = open_dataset(config.val_data, config.unit) if config.val_data else held_out
    if samples is None:
        return None
    return MapDataset(samples, FrameEncoder(encoder_settings(config, class_name, samples.unit, train=False, cuboid=cuboid)))


def class_symmetries(config: TrainConfig, class_name: str) -> Symmetries:
    """The symmetries of the trained class from --symmetries (none given: an asymmetric object)."""
    if config.symmetries is None:
        return NO_SYMMETRY
    table = read_symmetries(config.symmetries)
    if "" in table:  # one object's model_info.json
        return table[""]
    if class_name not in table:
        raise DopeError(f"option 'symmetries': {config.symmetries} has no object '{class_name}' (it has {', '.join(sorted(table))})")
    return table[class_name]


def encoder_settings(config: TrainConfig, class_name: str, unit, train: bool, cuboid: Cuboid | None) -> EncoderSettings:
    spec = network_spec(config.net)
    symmetries = class_symmetries(config, class_name)
    if symmetries.symmetric and cuboid is None:
        raise DopeError(f"option 'symmetries': symmetric class '{class_name}' needs its cuboid in the dataset manifest")
    return EncoderSettings(
        class_name=class_name, image_size=config.image_size, sigma=config.sigma,
        affinity_radius=config.affinity_radius, unit=unit, min_visibility=config.min_visibility,
        train=train and config.augment, rotation=config.rotation, scale_range=tuple(config.scale_range),
        seed=config.seed, stride=spec.stride, object_crops=config.object_crops, object_crop_size=config.object_crop_size,
        frame_height=config.frame_height,
        offset_scale=spec.offset_scale, camera_effects=config.camera_effects,
        map_convention=config.map_convention,
        cuboid=cuboid, symmetries=symmetries if symmetries.symmetric else None,
    )


