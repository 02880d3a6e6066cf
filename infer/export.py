"""ONNX export in the Isaac ROS DOPE layout, verified against torch.

Input `input`: (1, 3, H, W) float32 RGB, normalised as (x / 255 - mean) / std with the model's
mean/std. Output `output`: (1, 25, H/8, W/8), the last stage's 9 belief maps followed by its 16
affinity maps. The model's `ModelMeta` (class, cuboid, normalisation, stride, ...) is stored as JSON
in the ONNX metadata under `dope_stream`, so `dope infer --backend onnx` needs no other file.

`--int8` adds onnxruntime's static int8 quantisation (QDQ: int8 weights per channel, uint8
activations whose ranges come from calibration images); the same tensor layout and metadata.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np

from dope_stream.errors import DopeError
from dope_stream.exchange import write_atomically
from trainer.meta import ModelMeta

from .detector import network_input
from .images import list_images, read_image
from .loading import ONNX_METADATA_KEY, OnnxBackend

log = logging.getLogger(__name__)


def last_stage_module(model, offsets: bool = False):
    """Wrap a keypoint network so it returns cat(belief, affinity) of the last stage (`output`) and,
    for offset networks, their corner offsets as a second tensor (`offsets`)."""
    import torch

    class LastStage(torch.nn.Module):
        def __init__(self, network):
            super().__init__()
            self.network = network

        def forward(self, x):
            if not offsets:
                belief, affinity = self.network(x)[-1]
                return torch.cat([belief, affinity], dim=1)
            stages, corner_offsets = self.network(x, offsets=True)
            return torch.cat(stages[-1], dim=1), corner_offsets

    return LastStage(model).eval()


def export_onnx(
    model, info: ModelMeta, path: Path, width: int, height: int, dynamic: bool = False, opset: int = 17
) -> Path:
    """Write the ONNX file atomically (tmp + rename); returns its path."""
    import onnx
    import torch

    with_offsets = info.offset_scale is not None
    wrapped = last_stage_module(model.cpu().eval(), with_offsets)
    example = torch.zeros(1, 3, height, width)
    output_names = ["output", "offsets"] if with_offsets else ["output"]
    dynamic_axes = {"input": {0: "batch", 2: "height", 3: "width"}}
    dynamic_axes.update({name: {0: "batch", 2: "rows", 3: "cols"} for name in output_names})

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated but needs no extra package (the dynamo one needs onnxscript).
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
            torch.onnx.export(
                wrapped, (example,), str(tmp), dynamo=False, input_names=["input"], output_names=output_names,
                dynamic_axes=dynamic_axes if dynamic else None, opset_version=opset,
            )
        proto = onnx.load(str(tmp))
        entry = proto.metadata_props.add()
        entry.key, entry.value = ONNX_METADATA_KEY, json.dumps(info.to_dict())
        onnx.save(proto, str(tmp))

    return write_atomically(path, write)


def max_abs_difference(model, onnx_path: Path, width: int, height: int, seed: int = 0) -> float:
    """Largest |torch - onnxruntime| over the `output` tensor for a random normalised input."""
    import torch

    batch = np.random.default_rng(seed).standard_normal((1, 3, height, width)).astype(np.float32)
    backend = OnnxBackend(onnx_path)
    with torch.inference_mode():
        expected = last_stage_module(model.cpu().eval(), backend.info.offset_scale is not None)(torch.from_numpy(batch))
    expected = [t.numpy()[0] for t in expected] if isinstance(expected, tuple) else [expected.numpy()[0]]
    maps = backend(batch)
    got = [np.concatenate(maps[:2])] + list(maps[2:])
    return float(max(np.abs(a - b).max() for a, b in zip(got, expected)))


CALIBRATION_IMAGES = 32  # most calibration images used: ranges settle within a few dozen frames


def calibration_batches(folder: Path, info: ModelMeta, width: int, height: int) -> list[np.ndarray]:
    """Network inputs of up to CALIBRATION_IMAGES images of `folder`, spread evenly over it."""
    if folder is None:
        raise DopeError("option 'calibration': --int8 needs a folder of representative images (e.g. rendered frames)")
    images = list_images(Path(folder), option="--calibration")
    chosen = images[:: max(1, len(images) // CALIBRATION_IMAGES)][:CALIBRATION_IMAGES]
    return [network_input(read_image(path, option="--calibration"), (width, height), info.mean, info.std) for path in chosen]


def quantize_int8(fp32_path: Path, path: Path, batches: list[np.ndarray]) -> Path:
    """Static int8 (QDQ) copy of an exported model, calibrated on `batches`; written atomically."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.remaining = iter(batches)

        def get_next(self):
            batch = next(self.remaining, None)
            return None if batch is None else {"input": batch}

    metadata = {entry.key: entry.value for entry in onnx.load(str(fp32_path)).metadata_props}

    def write(tmp: Path) -> None:
        prepared = tmp.with_name(tmp.name + ".prepared.onnx")
        root = logging.getLogger()
        level = root.level
        # The quantiser logs on the root logger: a line per rescaled weight channel, and a warning for
        # the batch norm after the pyramid fusion (a 1-D weight it then quantises per tensor).
        root.setLevel(logging.ERROR)
        try:
            quant_pre_process(str(fp32_path), str(prepared))
            quantize_static(str(prepared), str(tmp), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
            prepared.unlink(missing_ok=True)
        proto = onnx.load(str(tmp))
        onnx.helper.set_model_props(proto, metadata)
        onnx.save(proto, str(tmp))

    return write_atomically(path, write)


def output_difference(reference: Path, other: Path, batches: list[np.ndarray]) -> dict[str, float]:
    """How far `other`'s belief maps are from `reference`'s over `batches`: the largest and mean
    absolute difference, the belief peaks (maps whose maximum is above 0.1) and how many of them
    moved by more than one output cell."""
    first, second = OnnxBackend(reference), OnnxBackend(other)
    largest, means, peaks, moved = 0.0, [], 0, 0
    for batch in batches:
        belief_a, belief_b = first(batch)[0], second(batch)[0]
        difference = np.abs(belief_a - belief_b)
        largest = max(largest, float(difference.max()))
        means.append(float(difference.mean()))
        for map_a, map_b in zip(belief_a, belief_b):
            if map_a.max() > 0.1:
                peaks += 1
                a = np.unravel_index(map_a.argmax(), map_a.shape)
                b = np.unravel_index(map_b.argmax(), map_b.shape)
                moved += int(max(abs(a[0] - b[0]), abs(a[1] - b[1])) > 1)
    return {"max_belief_difference": largest, "mean_belief_difference": float(np.mean(means)),
            "peaks": peaks, "peaks_moved": moved}
