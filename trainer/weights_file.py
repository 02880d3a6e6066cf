"""Reading a .pt/.pth file safely, with one message per way it can fail.

`torch.load(weights_only=True)` loads tensors and plain values only. Its own errors are long and,
for a file holding other objects, advise loading with `weights_only=False` (which runs whatever
code the file contains): the messages here say what is wrong instead.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from dope_stream.errors import DopeError


def load_weights_file(path: Path, what: str) -> object:
    """The content of `path`; `what` names it in errors (e.g. "--weights", "checkpoint")."""
    if not Path(path).is_file():
        raise DopeError(f"{what} {path}: file does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types (RuntimeError, KeyError, EOFError...) for bad files
        # A refused object is an UnpicklingError naming the "global" (class or function) it would import.
        if isinstance(err, pickle.UnpicklingError) and "global" in str(err):
            raise DopeError(
                f"{what} {path}: holds Python objects besides tensors and plain values; only weights are loaded "
                "(code in a file could run), so save the state_dict"
            ) from None
        raise DopeError(f"{what} {path}: cannot be read as a PyTorch file (truncated, or another format)") from None
