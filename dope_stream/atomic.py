"""Atomic file writes: readers never see a half-written file and a killed job leaves no truncated one."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

TMP_MARK = ".tmp"  # `.NAME.tmp.SUFFIX`


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` on a hidden sibling of `path`, then rename it over `path`.

    The temporary name keeps the suffix (`.name.tmp.png`), because OpenCV, matplotlib and onnx pick
    the format from it, and starts with a dot, so globs for finished files (`step-*.pt`) skip it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}{TMP_MARK}{path.suffix}")
    write(tmp)
    os.replace(tmp, path)
    return path


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete the temporaries that killed `write_atomically` calls left in `folder`; returns them."""
    left = sorted(Path(folder).glob(f".*{TMP_MARK}*"))
    for tmp in left:
        log.info("removing %s, left by an interrupted write", tmp)
        tmp.unlink(missing_ok=True)
    return left
