"""The one check of an output location, made by every verb before its work starts.

`output_folder(path, option)` creates the folder and writes (and drops) a nameless file in it;
`output_file(path, option)` does the same for a file's folder. A read-only file system, a missing
permission or a path that runs through a file becomes one DopeError naming the option and the
path, instead of an OSError traceback after minutes of work.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .errors import DopeError


def output_folder(path: Path | str, option: str) -> Path:
    """`path` as a folder this process can write into (created with its parents)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise DopeError(f"{option} {path}: cannot write there ({_reason(path, err)})") from None
    return path


def output_file(path: Path | str, option: str) -> Path:
    """`path` as a file this process can create or replace (its folder created)."""
    path = Path(path)
    if path.is_dir():
        raise DopeError(f"{option} {path}: is a folder; give a file name")
    output_folder(path.parent, option)
    return path


def _reason(path: Path, err: OSError) -> str:
    """What is wrong, in words: a file where a folder is needed is the common mistake."""
    for ancestor in (path, *path.parents):
        if ancestor.exists():
            return f"{ancestor} is a file, not a folder" if not ancestor.is_dir() else (err.strerror or str(err)).lower()
    return (err.strerror or str(err)).lower()
