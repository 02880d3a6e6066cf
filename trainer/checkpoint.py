"""Self-describing checkpoints: `load_model(path) -> (model, ModelMeta)` needs nothing but the file.

A checkpoint (`RUN/checkpoints/step-00001234.pt`, written atomically) is a dict of plain values and
tensors, so it loads with `torch.load(weights_only=True)`:
`meta` (ModelMeta as a dict), `model` (state dict), and for resuming `optimizer`, `scheduler`,
`scaler`, `epoch` (current epoch), `samples_done` (samples of that epoch already trained by this
rank), `step` (optimizer steps so far), `rng` (torch CPU RNG state), `config` (the TrainConfig).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from dope_stream.exchange import remove_temporaries, write_atomically
from dope_stream.errors import DopeError
from trainer.meta import ModelMeta
from trainer.networks import build_network
from trainer.weights_file import load_weights_file

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_GLOB = "step-*.pt"


def save_atomic(state: dict, path: Path) -> None:
    write_atomically(path, lambda tmp: torch.save(state, tmp))


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINT_DIR / f"step-{step:08d}.pt"


def list_checkpoints(run_dir: Path) -> list[Path]:
    return sorted((run_dir / CHECKPOINT_DIR).glob(CHECKPOINT_GLOB))


def remove_partial_checkpoints(run_dir: Path) -> None:
    """A kill during a checkpoint write leaves its hidden temporary; the next run deletes it."""
    remove_temporaries(run_dir / CHECKPOINT_DIR)


def save_checkpoint(state: dict, run_dir: Path, keep_last: int) -> Path:
    """Write `state` as the checkpoint of its step, then delete all but the newest `keep_last`."""
    path = checkpoint_path(run_dir, state["step"])
    save_atomic(state, path)
    for old in list_checkpoints(run_dir)[:-keep_last]:
        old.unlink()
    log.info("checkpoint %s", path)
    return path


def read_checkpoint(path: Path) -> dict:
    state = load_weights_file(path, "checkpoint")
    check_checkpoint(state, path)
    return state


def check_checkpoint(state, path: Path) -> None:
    """One DopeError unless `state` (a loaded file) is a checkpoint of this project."""
    if not isinstance(state, dict) or "meta" not in state or "model" not in state:
        raise DopeError(f"{path}: not a dope-stream checkpoint (no 'meta'/'model'); official DOPE weights: use load_official_dope")


def update_meta(path: Path, **changes) -> None:
    """Rewrite a checkpoint with these `meta` fields changed (atomically; weights and training state kept)."""
    state = read_checkpoint(path)
    state["meta"] = {**state["meta"], **changes}
    save_atomic(state, path)


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def load_model(path: Path | str, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelMeta]:
    """The network of a checkpoint (eval mode, on `device`) and its metadata.

    `path` may also be a run folder: its latest checkpoint is used.
    """
    path = Path(path)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise DopeError(f"{path}: no checkpoints in {path / CHECKPOINT_DIR}")
        path = found
    model, meta = model_from_checkpoint(read_checkpoint(path))
    return model.to(device).eval(), meta


def model_from_checkpoint(state: dict) -> tuple[nn.Module, ModelMeta]:
    """The network (eval mode, CPU) and metadata of an already loaded checkpoint."""
    meta = ModelMeta.from_dict(state["meta"])
    model = build_network(meta.network, meta.stages, pretrained=False)
    model.load_state_dict(state["model"])
    return model.eval(), meta
