"""Dataset sinks: WebDataset tar shards (default) or the classic DOPE folder, plus `manifest.json`.

Both writers accept samples in any order (Ray and process pools deliver out of order):
- shards: frames [k * frames_per_shard, (k + 1) * frames_per_shard) go to `shard-{k:06d}.tar`; a
  shard's samples are buffered until all of them have arrived, then written to `*.tar.tmp` and renamed
  into place, so a shard file on disk is always complete.
- folder: `000123.{jpg|png}`, `000123.json`, `000123.seg.png`, `000123.depth.png`, each written to a
  temporary name and renamed; the JSON goes last, and a frame counts as done when all four exist.

Resume: the files on disk are the record of what is done. `frames_to_render` checks that the output
folder was written with the same config (else one DopeError), deletes temporaries a kill left behind
and lists the frames still missing; rendering only those completes the dataset without touching
finished shards. `manifest.json` (written atomically at the start and after every shard) holds the
resolved config, tool version, seed, units ("m"), each class's cuboid (AABB centre + extent in the
model frame) and the finished shards with their frame ranges (folder: the number of finished frames).
Tar members get fixed metadata (mtime 0, owner "dope", mode 0444) so the same seed gives byte-identical shards.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import tarfile
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from . import __version__
from .config import GenerateConfig
from .errors import DopeError
from .geometry import Cuboid
from .outputs import output_folder
from .synth import Sample

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
TMP_SUFFIX = ".tmp"
UNITS = "m"
# Options that change how a dataset is produced, not what it holds: a resume may change them.
RUN_ONLY_OPTIONS = ("workers", "ray", "out", "actor_gpus", "stream_buffer", "shuffle_buffer")


class DatasetWriter(Protocol):
    def add(self, sample: Sample) -> None: ...

    def close(self) -> None: ...


def shard_name(shard: int) -> str:
    return f"shard-{shard:06d}.tar"


def shard_ranges(config: GenerateConfig) -> list[range]:
    """Frame indices of each shard, in shard order (the last one may be shorter)."""
    size = config.frames_per_shard
    return [range(start, min(start + size, config.nb_frames)) for start in range(0, config.nb_frames, size)]


def member_names(config: GenerateConfig) -> tuple[str, ...]:
    """The members of every sample; the JSON last, so in the folder layout it marks a finished frame."""
    return (config.image_format, "seg.png", "depth.png", "json")


def frames_to_render(out: Path, config: GenerateConfig) -> list[int]:
    """Frames of `config` not yet finished in `out`, after checking `out` belongs to this config and
    deleting the temporary files of an interrupted run."""
    out = Path(out)
    if not out.exists():
        return list(range(config.nb_frames))
    if not out.is_dir():
        raise DopeError(f"out: {out} exists and is not a folder")
    _check_manifest(out, config)
    for stale in out.glob(f"*{TMP_SUFFIX}"):
        log.info("removing %s left by an interrupted run", stale)
        stale.unlink()
    return _missing_frames(out, config)


def _missing_frames(out: Path, config: GenerateConfig) -> list[int]:
    if config.layout == "shards":
        done = {shard.name for shard in out.glob("shard-*.tar")}
        return [i for k, frames in enumerate(shard_ranges(config)) if shard_name(k) not in done for i in frames]
    existing = set(os.listdir(out))
    members = member_names(config)
    return [i for i in range(config.nb_frames) if not all(f"{i:06d}.{m}" in existing for m in members)]


def open_writer(config: GenerateConfig, class_cuboids: dict[str, Cuboid]) -> DatasetWriter:
    """The writer for `config.layout` into `config.out` (created; its manifest written)."""
    out = output_folder(config.out, "--out")
    _check_manifest(out, config)
    writer_class = ShardWriter if config.layout == "shards" else FolderWriter
    return writer_class(out, config, class_cuboids)


class ShardWriter:
    """Buffers each shard's samples until the shard is complete, then writes it atomically."""

    def __init__(self, out: Path, config: GenerateConfig, class_cuboids: dict[str, Cuboid]):
        self.out, self.config, self.class_cuboids = out, config, class_cuboids
        self.ranges = shard_ranges(config)
        self.pending: dict[int, dict[int, Sample]] = {}
        write_manifest(out, config, class_cuboids)

    def add(self, sample: Sample) -> None:
        shard = sample.index // self.config.frames_per_shard
        if (self.out / shard_name(shard)).exists():
            log.debug("frame %d belongs to the finished %s; ignored", sample.index, shard_name(shard))
            return
        samples = self.pending.setdefault(shard, {})
        samples[sample.index] = sample
        if len(samples) == len(self.ranges[shard]):
            self._write_shard(shard, [samples[i] for i in self.ranges[shard]])
            del self.pending[shard]

    def close(self) -> None:
        if self.pending:
            log.warning("%d incomplete shard(s) not written; run again to finish them", len(self.pending))
        self.pending.clear()

    def _write_shard(self, shard: int, samples: list[Sample]) -> None:
        path = self.out / shard_name(shard)
        tmp = path.with_name(path.name + TMP_SUFFIX)
        with open(tmp, "wb") as stream:
            # The standard library's tarfile writes the WebDataset layout (KEY.member files, a sample's
            # members adjacent); webdataset's own TarWriter would import torch into every writer.
            with tarfile.open(fileobj=stream, mode="w") as tar:
                for sample in samples:
                    for member in sorted(sample.members):
                        _add_member(tar, f"{sample.key}.{member}", sample.members[member])
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
        write_manifest(self.out, self.config, self.class_cuboids)


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o444  # fixed metadata: same seed, same bytes
    info.uname = info.gname = "dope"
    tar.addfile(info, io.BytesIO(data))


class FolderWriter:
    """Writes each frame's files as it arrives (classic DOPE layout)."""

    def __init__(self, out: Path, config: GenerateConfig, class_cuboids: dict[str, Cuboid]):
        self.out, self.config, self.class_cuboids = out, config, class_cuboids
        write_manifest(out, config, class_cuboids)

    def add(self, sample: Sample) -> None:
        for member in member_names(self.config):
            write_atomic(self.out / f"{sample.key}.{member}", sample.members[member])

    def close(self) -> None:
        write_manifest(self.out, self.config, self.class_cuboids)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + TMP_SUFFIX)
    tmp.write_bytes(data)
    os.replace(tmp, path)


@contextmanager
def _folder_lock(out: Path):
    """Exclusive lock on the output folder itself (no extra file), released on exit."""
    descriptor = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def write_manifest(out: Path, config: GenerateConfig, class_cuboids: dict[str, Cuboid]) -> None:
    """manifest.json from the files on disk (several writers into one folder stay consistent)."""
    # Ray stream consumers in several processes write shards into one folder: under the lock each
    # rewrite sees every shard renamed before it, so the last rewrite lists them all.
    with _folder_lock(out):
        _write_manifest_unlocked(out, config, class_cuboids)


def _write_manifest_unlocked(out: Path, config: GenerateConfig, class_cuboids: dict[str, Cuboid]) -> None:
    manifest = {
        "tool": "dope_stream",
        "version": __version__,
        "layout": config.layout,
        "units": UNITS,
        "seed": config.seed,
        "nb_frames": config.nb_frames,
        "members": list(member_names(config)),
        "classes": {name: cuboid.to_dict() for name, cuboid in class_cuboids.items()},
        "config": resolved_config(config),
    }
    if config.layout == "shards":
        done = {p.name for p in out.glob("shard-*.tar")}
        manifest["frames_per_shard"] = config.frames_per_shard
        manifest["shards"] = [
            {"name": shard_name(k), "first_frame": r.start, "nb_frames": len(r)}
            for k, r in enumerate(shard_ranges(config))
            if shard_name(k) in done
        ]
        frames_done = sum(s["nb_frames"] for s in manifest["shards"])
    else:
        frames_done = config.nb_frames - len(_missing_frames(out, config))
    manifest["frames_done"] = frames_done
    manifest["complete"] = frames_done == config.nb_frames
    write_atomic(out / MANIFEST_NAME, (json.dumps(manifest, indent=1) + "\n").encode())


def resolved_config(config: GenerateConfig) -> dict:
    """The config as JSON-safe values with absolute paths (a resume may start from another folder)."""
    values = config.model_dump(mode="json")
    for name in type(config).model_fields:
        value = getattr(config, name)
        if isinstance(value, Path):
            values[name] = str(value.resolve())
        elif isinstance(value, list) and value and all(isinstance(v, Path) for v in value):
            values[name] = [str(v.resolve()) for v in value]
    return values


def _check_manifest(out: Path, config: GenerateConfig) -> None:
    """Refuse to add to a dataset written with another config (its frames would not match)."""
    path = out / MANIFEST_NAME
    if not path.is_file():
        return
    try:
        stored = json.loads(path.read_bytes())["config"]
    except (ValueError, KeyError, TypeError):  # not JSON (ValueError: also bad UTF-8), no config
        stored = None
    if not isinstance(stored, dict):
        raise DopeError(f"out: {path} is not a manifest written by dope generate; choose another --out")
    current = resolved_config(config)
    for name in sorted(set(current) | set(stored)):
        if name not in RUN_ONLY_OPTIONS and stored.get(name) != current.get(name):
            raise DopeError(
                f"out: {out} holds a dataset generated with {name}={stored.get(name)!r}, not {current.get(name)!r}; "
                "use the same options to resume it, or another --out"
            )
