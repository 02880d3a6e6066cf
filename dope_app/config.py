"""The configuration tree: every stage's settings as sections of one typed schema.

`DopeConfig` holds `generate`, `train` (whose `stream` is a nested generate config), `infer`,
`evaluate`, `export`, `container` and `demo`; each section is the model its command reads, and a
YAML file of the whole tree gives each command its section (`dope VERB --config tree.yaml`).
`dope config` prints the tree's defaults as commented YAML. The demo and the container build their
stages' configs as one tree (`DemoConfig.tree`, `dope_app.container.plan_run`).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from dope_stream.config import PACKAGE_ASSETS, ConfigModel, FloatPair, GenerateConfig, IntRange, field_like
from infer.config import CalibrateConfig, EvaluateConfig, ExportConfig, InferConfig
from trainer.config import TrainConfig


class ContainerConfig(ConfigModel):
    """What the container runs and where it keeps its files."""

    section: ClassVar[str] = "container"

    generator: Literal["generate-only", "train-only", "generate-then-train", "streaming"] = Field(
        "generate-then-train", description="what to run: render a dataset, train on one, both, or train on frames rendered live"
    )
    dataset: Path | None = Field(None, description="folder the frames are generated into (default: checkpoint_dir/dataset)")
    checkpoint_dir: Path | None = Field(None, description="generated frames and training checkpoints, kept across restarts")
    model_dir: Path | None = Field(None, description="where the final model.pt goes (default: SM_MODEL_DIR, ROOT/model or out/model)")
    processes: int | None = Field(
        None, ge=1, description="training processes (torchrun, one device each); default: one per visible GPU, else 1"
    )


class DemoConfig(ConfigModel):
    """`dope demo`: generate -> train -> infer -> evaluate on the built-in cracker box."""

    section: ClassVar[str] = "demo"
    deprecated_keys: ClassVar[dict[str, str]] = {"workers": "render_workers"}

    out: Path = Field(Path("out/demo"), description="output folder (report.md, data, run, predictions)")
    train_frames: int = Field(2000, ge=16, description="frames rendered for training (one epoch; later epochs read them back)")
    epochs: int = field_like(TrainConfig, "epochs", 4)
    test_frames: int = Field(40, ge=1, description="frames of the test set (rendered with seed + 1000)")
    size: int = Field(192, ge=64, le=1024, description="rendered frame width = height = training crop (a multiple of 8)")
    nb_objects: IntRange = field_like(GenerateConfig, "nb_objects", (1, 1), "cracker boxes per frame: N or a range a,b")
    nb_distractors: IntRange = field_like(GenerateConfig, "nb_distractors", (1, 3))
    depth_range: FloatPair = field_like(
        GenerateConfig, "depth_range", (0.3, 0.7), "near,far distance of the boxes from the camera (m): large in the frame"
    )
    max_rotation: float = field_like(
        GenerateConfig, "max_rotation", 45.0,
        "largest angle (degrees) of a box away from upright facing the camera. 45: corner identities are "
        "learnt in minutes (validation keypoint error 6.5 px after 250 steps); 180 (all orientations) needs far "
        "longer: after 3,000 CPU steps the corners were found but only 23% had the right identity (chance 12.5%)",
    )
    batch_size: int = field_like(TrainConfig, "batch_size", 8)
    lr: float = field_like(TrainConfig, "lr", 1e-3)
    warmup_steps: int = field_like(
        TrainConfig, "warmup_steps", 30, "learning-rate warm-up steps (short: the run is a few hundred steps)"
    )
    render_workers: int = field_like(
        GenerateConfig, "render_workers", 2,
        "rendering processes (while they render, training takes the cores left, at least one)",
    )
    stream: bool = Field(True, description="train on the live stream (frames rendered during training) when available")
    seed: int = Field(0, ge=0, description="seed of the training frames; the test set uses seed + 1000")
    device: str = Field("cpu", description="device for training and inference (cpu, cuda)")

    @field_validator("size")
    @classmethod
    def _multiple_of_8(cls, size: int) -> int:
        if size % 8:
            raise ValueError(f"must be a multiple of 8 (the network's output stride), e.g. {size - size % 8}")
        return size

    def training_frames(self) -> GenerateConfig:
        return self._frames(self.out / "train", self.train_frames, self.seed, "shards")

    def test_set(self) -> GenerateConfig:
        return self._frames(self.out / "test", self.test_frames, self.seed + 1000, "folder")

    def _frames(self, out: Path, frames: int, seed: int, layout: str) -> GenerateConfig:
        return GenerateConfig(
            # Flying boxes facing the camera (max_rotation): what a light network learns in the demo's minutes.
            scene="flying", out=out, nb_frames=frames, seed=seed, layout=layout, width=self.size, height=self.size,
            nb_objects=self.nb_objects, nb_distractors=self.nb_distractors, depth_range=self.depth_range,
            max_rotation=self.max_rotation, render_workers=self.render_workers,
            image_format="jpg",  # test frames encoded as the training shards are (the figures were measured so)
        )

    def tree(self, streaming: bool) -> "DopeConfig":
        """The stages of the demo as one configuration tree (`generate`: the test set)."""
        common = dict(
            out=self.out / "run", net="light", epochs=self.epochs, batch_size=self.batch_size, image_size=self.size,
            lr=self.lr, warmup_steps=self.warmup_steps, resume=True, seed=self.seed,
            device="cuda" if self.device.startswith("cuda") else "cpu", save_every=50, val_fraction=0.0,
        )
        if streaming:
            # The Ray actors render and encode the frames already: no loader processes on top.
            train = TrainConfig(stream=self.training_frames(), stream_frames_per_epoch=self.train_frames, loader_workers=0, **common)
        else:
            # One loader process is enough for these small frames and leaves the cores to training.
            train = TrainConfig(data=[self.training_frames().out], loader_workers=1, **common)
        test_set = self.test_set()
        predictions = self.out / "predictions"
        return DopeConfig(
            generate=test_set, train=train, demo=self,
            evaluate=EvaluateConfig(pred=predictions, gt=test_set.out, models=PACKAGE_ASSETS / "objects", min_visibility=0.1,
                                    out=self.out),
        )


class DopeConfig(ConfigModel):
    """Every stage's settings; each key is one command's section (`dope VERB --config` reads its own)."""

    generate: GenerateConfig = Field(default_factory=GenerateConfig, description="dope generate: render a synthetic dataset")
    train: TrainConfig = Field(default_factory=TrainConfig, description="dope train: fit a keypoint network")
    infer: InferConfig | None = Field(None, description="dope infer: poses in images (needs weights and images)")
    calibrate: CalibrateConfig | None = Field(
        None, description="dope calibrate: a checkpoint's distance correction (needs weights and images)")
    evaluate: EvaluateConfig | None = Field(None, description="dope evaluate: ADD/ADD-S accuracy (needs pred and gt)")
    export: ExportConfig | None = Field(None, description="dope export: ONNX (needs weights and onnx)")
    container: ContainerConfig = Field(default_factory=ContainerConfig, description="the container's entry point")
    demo: DemoConfig = Field(default_factory=DemoConfig, description="dope demo")


# Sections whose models have required keys: `dope config` shows them commented out.
SECTIONS_WITH_REQUIRED_KEYS = ("infer", "calibrate", "evaluate", "export")


def default_tree_yaml() -> str:
    """The default tree as commented YAML. It loads back as `DopeConfig()`; the sections with
    required keys are commented out, to be filled in."""
    text = DopeConfig().to_commented_yaml()
    for name in SECTIONS_WITH_REQUIRED_KEYS:
        model = DopeConfig.model_fields[name].annotation.__args__[0]
        lines = [f"# {name}:"] + [f"#   {line}" for line in model.default_yaml().splitlines()]
        text = text.replace(f"{name}: null\n", "\n".join(lines) + "\n")
    return text
