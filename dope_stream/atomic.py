"""Atomic file writes: readers never see a half-written file and a killed job leaves no truncated one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` on a hidden sibling of `path`, then rename it over `path`.

    The temporary name keeps the suffix (`.name.tmp.png`), because OpenCV, matplotlib and onnx pick
    the format from it, and starts with a dot, so globs for finished files (`step-*.pt`) skip it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    write(tmp)
    os.replace(tmp, path)
    return path
