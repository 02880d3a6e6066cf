"""ONNX export in the Isaac ROS DOPE layout, verified against torch.

Input `input`: (1, 3, H, W) float32 RGB, normalised as (x / 255 - mean) / std with the model's
mean/std. Output `output`: (1, 25, H/8, W/8), the last stage's 9 belief maps followed by its 16
affinity maps. The model's `NetworkInfo` (class, cuboid, normalisation, stride) is stored as JSON
in the ONNX metadata under `dope_stream`, so `dope infer --backend onnx` needs no other file.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np

from dope_stream.atomic import write_atomically

from .detector import NetworkInfo
from .loading import ONNX_METADATA_KEY

log = logging.getLogger(__name__)


def last_stage_module(model):
    """Wrap a keypoint network so it returns one tensor: cat(belief, affinity) of the last stage."""
    import torch

    class LastStage(torch.nn.Module):
        def __init__(self, network):
            super().__init__()
            self.network = network

        def forward(self, x):
            belief, affinity = self.network(x)[-1]
            return torch.cat([belief, affinity], dim=1)

    return LastStage(model).eval()


def export_onnx(
    model, info: NetworkInfo, path: Path, width: int, height: int, dynamic: bool = False, opset: int = 17
) -> Path:
    """Write the ONNX file atomically (tmp + rename); returns its path."""
    import onnx
    import torch

    wrapped = last_stage_module(model.cpu().eval())
    example = torch.zeros(1, 3, height, width)
    dynamic_axes = {"input": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch", 2: "rows", 3: "cols"}}

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated but needs no extra package (the dynamo one needs onnxscript).
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
            torch.onnx.export(
                wrapped, (example,), str(tmp), dynamo=False, input_names=["input"], output_names=["output"],
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

    from .loading import OnnxBackend

    batch = np.random.default_rng(seed).standard_normal((1, 3, height, width)).astype(np.float32)
    with torch.inference_mode():
        expected = last_stage_module(model.cpu().eval())(torch.from_numpy(batch)).numpy()
    belief, affinity = OnnxBackend(onnx_path)(batch)
    return float(np.abs(np.concatenate([belief, affinity])[None] - expected).max())
