"""Options of `dope infer`, `dope evaluate` and `dope export` (fields = YAML keys = CLI options)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from dope_stream.config import PACKAGE_ASSETS, CameraIntrinsics, ConfigModel, StrList, _parse_floats, _parse_list

FloatTriple = Annotated[tuple[float, float, float], BeforeValidator(_parse_floats(3))]
FloatList = Annotated[list[float], BeforeValidator(_parse_list)]
LARGEST_PLAUSIBLE_OBJECT_M = 5.0


class NetworkOptions(ConfigModel):
    """Which network to load; the object options are needed only for the official DOPE weights."""

    weights: Path = Field(description="checkpoint (.pth) of this project, official DOPE weights, or an exported .onnx")
    object: str | None = Field(None, description="class name (required for official weights; checked against checkpoints)")
    dims: FloatTriple | None = Field(
        None, description="official weights: cuboid size x,y,z in metres along the model axes (the AABB extents)"
    )
    center: FloatTriple = Field(
        (0.0, 0.0, 0.0), description="official weights: AABB centre x,y,z of the mesh in its own frame (metres)"
    )
    mean: FloatTriple | None = Field(None, description="official weights: input mean per RGB channel (default 0.5)")
    std: FloatTriple | None = Field(None, description="official weights: input std per RGB channel (default 0.5)")
    map_convention: Literal["centre", "corner"] = Field(
        "centre", description="official weights: where their targets put a keypoint at pixel u on the stride-8 maps: "
        "centre (u - 3.5) / 8, the original weights; corner u / 8, weights from the reference's current train.py",
    )
    device: str = Field("cpu", description="torch device (cpu, cuda, cuda:1, mps)")

    @field_validator("dims")
    @classmethod
    def _dims_in_metres(cls, dims):
        if dims is not None and (min(dims) <= 0 or max(dims) > LARGEST_PLAUSIBLE_OBJECT_M):
            raise ValueError("cuboid dimensions must be positive and in metres (centimetres? divide by 100)")
        return dims


class InferConfig(NetworkOptions):
    """`dope infer`: 6-DoF poses of an object in images or a video."""

    section: ClassVar[str] = "infer"

    images: Path = Field(description="an image, a folder of images, a video file, or a BOP dataset (root, split or scene)")
    out: Path = Field(Path("out/infer"), description="output folder: per-image JSON and overlay PNG (or video)")
    camera: Path | None = Field(None, description="camera.yaml (ROS camera_info: image_width, image_height, camera_matrix)")
    intrinsics: CameraIntrinsics | None = Field(None, description="fx,fy,cx,cy in pixels of the input images")
    backend: Literal["torch", "onnx"] = Field("torch", description="torch (checkpoints) or onnx (onnxruntime, .onnx weights)")
    input_height: int | None = Field(
        None, ge=16, le=4096,
        description="resize images to this height for the network (width keeps the aspect); none: native size",
    )
    pyramid: FloatList | None = Field(
        [2.0, 1.0, 0.5],
        description="models that refine (object crops): first pass at these image heights, as multiples of "
        "--input_height (else the model's training input size), the detections of every level refined and "
        "merged, so objects of any size meet the network at a size it trained on; none: one pass at "
        "--input_height or the native size",
    )
    refine_object_size: int | None = Field(
        None, ge=0, le=1024,
        description="second pass: crop each detection so its cuboid spans this many pixels of a network input "
        "of the training size, and take the pose from the crop (small objects are seen larger); 0: one pass; "
        "none: the object_crop_size the model was trained with (one pass if it was not)",
    )
    refine_iterations: int = Field(
        2, ge=1, le=5,
        description="second pass: crops per detection, each cut around the previous crop's pose (2: the first "
        "crop, cut around a coarse detection, is off centre and off scale; the second is not)",
    )
    peak_threshold: float = Field(0.05, ge=0, description="minimum belief of a keypoint peak")
    centroid_threshold: float = Field(0.1, ge=0, description="minimum belief of a centroid peak that starts an object")
    subpixel: Literal["parabola", "window"] = Field(
        "parabola", description="a belief peak's sub-pixel position: parabola, the vertex of the log-parabola through the "
        "three cells across it on each axis; window, the belief-weighted mean of a window sized to the peak (the "
        "earlier default; it follows the blobs' lean towards the object, putting poses too far)",
    )
    snap_radius: float = Field(
        3.0, ge=0, le=10,
        description="offset networks (centre): a corner's belief peak within this many map cells of the corner the "
        "offsets regress replaces it (README, Real photos)",
    )
    min_score: float = Field(
        0.2, ge=0, le=1,
        description="detections whose score (the summed belief of their PnP inliers / 9) is lower are dropped: at 0.2, "
        "half to nine tenths of the false ones on the validation sets, the ADD AUC unchanged (README, Real photos)",
    )
    min_keypoints: int = Field(6, ge=4, le=9, description="fewest keypoints (of 9) a pose is solved from")
    max_reprojection_error: float = Field(10.0, gt=0, description="poses with a larger mean reprojection error (pixels) are rejected")
    resume: bool = Field(True, description="skip images whose JSON is already in --out")
    bop_csv: Path | None = Field(
        None, description="--images BOP_DIR: also write the poses as a BOP result CSV (scene_id,im_id,obj_id,score,R,t,time)"
    )
    bop_obj_id: int | None = Field(None, ge=1, description="BOP obj_id of the detected class (default: from a class named obj_000005)")

    @field_validator("pyramid")
    @classmethod
    def _pyramid_levels(cls, levels):
        if levels is not None and (not levels or not all(0.1 <= level <= 8 for level in levels)):
            raise ValueError("give one or more comma-separated height multiples between 0.1 and 8 (e.g. 2,1,0.5), or none")
        return levels


class CalibrateConfig(InferConfig):
    """`dope calibrate`: measure a checkpoint's distance bias on synthetic frames with ground truth
    (any of `dope infer`'s options, as the model will be run) and store the correction in it."""

    section: ClassVar[str] = "calibrate"

    images: Path = Field(
        description="folder of held-out synthetic frames with ground truth beside them (`dope generate --layout folder`, "
        "another seed than training; not the test set)"
    )
    out: Path = Field(Path("out/calibrate"), description="output folder for the predictions the bias is measured on")
    models: Path = Field(
        PACKAGE_ASSETS / "objects", description="folder with CLASS/points.xyz (or CLASS/ mesh, CLASS.xyz) per class"
    )
    save: bool = Field(True, description="write the distance scale into the checkpoint (--no-save: only report it)")


class EvaluateConfig(ConfigModel):
    """`dope evaluate`: ADD/ADD-S accuracy of predicted poses against ground truth."""

    section: ClassVar[str] = "evaluate"

    pred: Path = Field(description="folder of prediction JSON files (`dope infer` output), or a BOP result CSV")
    gt: Path = Field(
        description="folder of ground-truth JSON files (this project's format), matched by file stem; or a BOP dataset "
        "(its models, test_targets_bop19.json and symmetries are used)"
    )
    models: Path = Field(
        PACKAGE_ASSETS / "objects", description="folder with CLASS/points.xyz (or CLASS/ mesh, CLASS.xyz) per class"
    )
    symmetric: StrList = Field(
        default_factory=list, description="classes evaluated with ADD-S (besides those with symmetries in "
        "--models: models_info.json or CLASS/model_info.json)",
    )
    min_visibility: float = Field(0.0, ge=0, le=1, description="ground truth at or below this visibility is ignored")
    out: Path | None = Field(None, description="folder for metrics.json and accuracy_curve.png (default: --pred)")


class ExportConfig(NetworkOptions):
    """`dope export`: ONNX model with input `input` (1,3,H,W) and output `output` (1,25,H/8,W/8), and/or
    the official weight layout."""

    section: ClassVar[str] = "export"

    onnx: Path | None = Field(None, description="output .onnx file")
    official: Path | None = Field(
        None, description="dope network: also write OUT.pth, a plain `module.`-prefixed state dict (the layout the "
        "reference code and Isaac ROS's dope_converter.py load)",
    )
    height: int = Field(480, ge=16, le=4096, description="input height (a multiple of 8)")
    width: int = Field(640, ge=16, le=4096, description="input width (a multiple of 8)")
    dynamic: bool = Field(False, description="dynamic batch, height and width instead of a fixed size")
    opset: int = Field(17, ge=11, le=21, description="ONNX opset version")
    int8: bool = Field(False, description="also quantise to int8 (onnxruntime QDQ), written as OUT.int8.onnx: 1.6-1.7x faster on a CPU with VNNI")
    calibration: Path | None = Field(None, description="--int8: folder of representative images (rendered frames or photos; up to 32 used)")

    @model_validator(mode="after")
    def _some_output(self) -> "ExportConfig":
        if self.onnx is None and self.official is None:
            raise ValueError("give --onnx OUT.onnx, --official OUT.pth or both")
        return self

    @field_validator("height", "width")
    @classmethod
    def _multiple_of_stride(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"must be a multiple of 8 (the network's output stride), e.g. {value - value % 8 or 8}")
        return value
