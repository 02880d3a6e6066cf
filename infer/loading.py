"""Networks for inference from any weights file: this project's checkpoints, the official DOPE
state dicts (the user supplies what they lack: class, cuboid, normalisation), or exported ONNX
models (whose `ModelMeta` travels in the ONNX metadata)."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from dope_stream.errors import DopeError
from dope_stream.geometry import Cuboid
from trainer.meta import ModelMeta

from .config import NetworkOptions

log = logging.getLogger(__name__)

ONNX_METADATA_KEY = "dope_stream"
OFFICIAL_NORMALISATION = (0.5, 0.5, 0.5)  # the original YCB weights; newer releases use ImageNet's


def load_torch_network(options: NetworkOptions):
    """(torch model in eval mode on options.device, ModelMeta with a cuboid) from a .pth file, read once."""
    from trainer.weights_file import load_weights_file

    from trainer.checkpoint import check_checkpoint, model_from_checkpoint

    path = checkpoint_file(options.weights)
    if path.suffix.lower() == ".onnx":
        raise DopeError(f"--weights {path}: an ONNX model runs with --backend onnx")
    content = load_weights_file(path, "--weights")
    if _is_official_state_dict(content):
        model, info = _official_network(content, options)
    else:
        check_checkpoint(content, path)
        model, meta = model_from_checkpoint(content)
        info = with_cuboid(meta, options)
        check_class(options, info)
    return model.to(options.device).eval(), info


def check_class(options: NetworkOptions, info: ModelMeta) -> None:
    """--object, when given, must be the class the network detects."""
    if options.object is not None and options.object != info.class_name:
        raise DopeError(f"--object '{options.object}': unknown class for {options.weights}, which detects '{info.class_name}'")


def checkpoint_file(path: Path) -> Path:
    """The file itself, or a training run folder's latest checkpoint."""
    if path.is_dir():
        from trainer.checkpoint import latest_checkpoint

        found = latest_checkpoint(path)
        if found is None:
            raise DopeError(f"--weights {path}: folder holds no checkpoints (expected a training run folder)")
        return found
    if not path.is_file():
        raise DopeError(f"--weights {path}: file does not exist")
    return path


def _is_official_state_dict(content) -> bool:
    """A bare state dict of the reference network (keys `vgg.*`, `m1_2.*`, optionally `module.`-prefixed)."""
    return isinstance(content, dict) and any(
        isinstance(k, str) and k.removeprefix("module.") == "vgg.0.weight" for k in content
    )


def _official_network(state: dict, options: NetworkOptions):
    from trainer.networks import load_official_dope

    if options.object is None or options.dims is None:
        raise DopeError(
            f"--weights {options.weights}: official DOPE weights carry no object description; "
            "give --object CLASS and --dims X,Y,Z (the cuboid size in metres)"
        )
    model = load_official_dope(state)
    info = ModelMeta(
        network="dope",
        class_name=options.object,
        cuboid=Cuboid(tuple(options.center), tuple(options.dims)),
        stages=model.num_stages,
        input_size=None,
        mean=tuple(options.mean or OFFICIAL_NORMALISATION),
        std=tuple(options.std or OFFICIAL_NORMALISATION),
        map_convention=options.map_convention,
    )
    return model, info


def with_cuboid(meta: ModelMeta, options: NetworkOptions) -> ModelMeta:
    """`meta`, with --dims/--center standing in for a cuboid the training data lacked."""
    if meta.cuboid is not None:
        return meta
    if options.dims is None:
        raise DopeError(f"--weights {options.weights}: the checkpoint has no object cuboid; give --dims X,Y,Z (metres)")
    return dataclasses.replace(meta, cuboid=Cuboid(tuple(options.center), tuple(options.dims)))


class OnnxBackend:
    """onnxruntime session of an exported model; `output` holds belief (9) + affinity (16) channels."""

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for bad models
            raise DopeError(f"--weights {path}: cannot be loaded by onnxruntime ({err})") from None
        height, width = self.session.get_inputs()[0].shape[2:]
        self.fixed_size = (width, height) if isinstance(width, int) and isinstance(height, int) else None
        metadata = self.session.get_modelmeta().custom_metadata_map
        if ONNX_METADATA_KEY not in metadata:
            raise DopeError(f"--weights {path}: no '{ONNX_METADATA_KEY}' metadata; export it with `dope export`")
        self.info = ModelMeta.from_dict(json.loads(metadata[ONNX_METADATA_KEY]))

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        if self.info.offset_scale is None:
            (output,) = self.session.run(["output"], {"input": batch})
            return output[0, :9], output[0, 9:]
        output, offsets = self.session.run(["output", "offsets"], {"input": batch})
        return output[0, :9], output[0, 9:], offsets[0]
