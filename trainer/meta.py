"""`ModelMeta`: what inference needs to use a network, whatever file it came from (a checkpoint,
official DOPE weights plus the user's description of the object, or an exported ONNX model's
metadata). Plain data, no torch, so the onnxruntime path does not import it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from dope_stream.geometry import DEFAULT_MAP_CONVENTION, Cuboid

STRIDE = 8  # output stride of every registered network
OFFSET_SCALE = 8.0  # offset networks regress corner offsets in map cells divided by this (objects span a few to 30 cells)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Input normalisations by name: (mean, std) of RGB in 0..1.
NORMALIZATIONS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "half": ((0.5,) * 3, (0.5,) * 3)}


@dataclass(frozen=True)
class ModelMeta:
    """Everything inference needs to use a network."""

    network: str  # registry name (trainer.networks.NETWORKS)
    class_name: str
    cuboid: Cuboid | None  # AABB centre + extent in the model frame (metres); None if the data had no manifest
    stages: int | None  # None: unknown (ONNX files exported before the metadata carried it)
    input_size: int | None  # square training crop in pixels (None: unknown, e.g. official weights); any multiple of 8 works
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    stride: int = STRIDE
    outputs: dict[str, int] = field(default_factory=lambda: {"belief": 9, "affinity": 16})
    offset_scale: float | None = None  # offset networks (`centre`): the offsets' unit in map cells
    map_convention: str = DEFAULT_MAP_CONVENTION  # dope_stream.geometry.pixel_to_map: how targets were placed
    refine_object_size: int | None = None  # trained on object crops of this size (trainer.crops): infer's second pass
    symmetries: dict | None = None  # dope_stream.symmetry.Symmetries.to_dict(): labels follow its canonical pose
    # PnP distances are multiplied by this: the network's distance bias measured on held-out synthetic
    # frames by `dope calibrate` (its keypoints lie ~1% too close together, so poses come out 2-3% too far).
    distance_scale: float = 1.0

    def to_dict(self) -> dict:
        values = asdict(self)
        values["cuboid"] = self.cuboid.to_dict() if self.cuboid else None
        return values

    @staticmethod
    def from_dict(values: dict) -> "ModelMeta":
        """From `to_dict`; also reads older metadata: ONNX files' (no stages/input_size, an `official`
        flag) and checkpoints without `offset_scale` (an `offsets` output means OFFSET_SCALE)."""
        known = {f.name for f in fields(ModelMeta)}
        values = {k: v for k, v in values.items() if k in known}
        values.setdefault("stages", None)
        values.setdefault("input_size", None)
        values.setdefault("offset_scale", OFFSET_SCALE if "offsets" in values.get("outputs", {}) else None)
        values["cuboid"] = Cuboid.from_dict(values["cuboid"]) if values.get("cuboid") else None
        values["mean"] = tuple(float(m) for m in values["mean"])
        values["std"] = tuple(float(s) for s in values["std"])
        values["stride"] = int(values.get("stride", STRIDE))
        return ModelMeta(**values)
