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
The format itself (names, members, manifest fields, tar layout) is `dope_stream.exchange`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from . import __version__
from .config import GenerateConfig
from .errors import DopeError
from .exchange import (
    MANIFEST_NAME, SHARD_GLOB, TMP_SUFFIX, UNITS, Sample, member_names, sample_key, shard_name, shard_ranges,
    write_dataset_file, write_manifest, write_shard,
)
from .geometry import Cuboid
from .outputs import output_folder

log = logging.getLogger(__name__)

# How a dataset is rendered, not what it holds (a resume may change them; `workers` is render_workers' old name).
RUN_ONLY_OPTIONS = ("render_workers", "workers", "pathtrace", "ray", "out", "actor_gpus", "stream_buffer", "shuffle_buffer")


class DatasetWriter(Protocol):
    def add(self, sample: Sample) -> None: ...

    def close(self) -> None: ...


def config_shard_ranges(config: GenerateConfig) -> list[range]:
    """Frame indices of each shard of `config`'s dataset."""
    return shard_ranges(config.nb_frames, config.frames_per_shard)


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
        done = {shard.name for shard in out.glob(SHARD_GLOB)}
        return [i for k, frames in enumerate(config_shard_ranges(config)) if shard_name(k) not in done for i in frames]
    if config.layout == "bop":
        from .bop_writer import missing_frames

        return missing_frames(out, config)
    existing = set(os.listdir(out))
    members = member_names(config.image_format)
    return [i for i in range(config.nb_frames) if not all(f"{sample_key(i)}.{m}" in existing for m in members)]


def open_writer(config: GenerateConfig, class_cuboids: dict[str, Cuboid]) -> DatasetWriter:
    """The writer for `config.layout` into `config.out` (created; its manifest written)."""
    out = output_folder(config.out, "--out")
    _check_manifest(out, config)
    if config.layout == "bop":
        from .bop_writer import BopWriter

        return BopWriter(out, config, lambda: write_dataset_manifest(out, config, class_cuboids))
    writer_class = ShardWriter if config.layout == "shards" else FolderWriter
    return writer_class(out, config, class_cuboids)


class ShardWriter:
    """Buffers each shard's samples until the shard is complete, then writes it atomically."""

    def __init__(self, out: Path, config: GenerateConfig, class_cuboids: dict[str, Cuboid]):
        self.out, self.config, self.class_cuboids = out, config, class_cuboids
        self.ranges = config_shard_ranges(config)
        self.pending: dict[int, dict[int, Sample]] = {}
        write_dataset_manifest(out, config, class_cuboids)

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
        write_shard(self.out / shard_name(shard), samples)
        write_dataset_manifest(self.out, self.config, self.class_cuboids)


class FolderWriter:
    """Writes each frame's files as it arrives (classic DOPE layout)."""

    def __init__(self, out: Path, config: GenerateConfig, class_cuboids: dict[str, Cuboid]):
        self.out, self.config, self.class_cuboids = out, config, class_cuboids
        write_dataset_manifest(out, config, class_cuboids)

    def add(self, sample: Sample) -> None:
        for member in member_names(self.config.image_format):
            write_dataset_file(self.out / f"{sample.key}.{member}", sample.members[member])

    def close(self) -> None:
        write_dataset_manifest(self.out, self.config, self.class_cuboids)


@contextmanager
def _folder_lock(out: Path):
    """Exclusive lock on the output folder itself (no extra file), released on exit."""
    descriptor = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def write_dataset_manifest(out: Path, config: GenerateConfig, class_cuboids: dict[str, Cuboid]) -> None:
    """manifest.json from the files on disk (several writers into one folder stay consistent)."""
    # Ray stream consumers in several processes write shards into one folder: under the lock each
    # rewrite sees every shard renamed before it, so the last rewrite lists them all.
    with _folder_lock(out):
        _write_manifest_unlocked(out, config, class_cuboids)


def _write_manifest_unlocked(out: Path, config: GenerateConfig, class_cuboids: dict[str, Cuboid]) -> None:
    manifest = {
        "version": __version__,
        "layout": config.layout,
        "units": UNITS,
        "seed": config.seed,
        "nb_frames": config.nb_frames,
        "members": list(member_names(config.image_format)),
        "classes": {name: cuboid.to_dict() for name, cuboid in class_cuboids.items()},
        "config": resolved_config(config),
    }
    if config.layout == "shards":
        done = {p.name for p in out.glob(SHARD_GLOB)}
        manifest["frames_per_shard"] = config.frames_per_shard
        manifest["shards"] = [
            {"name": shard_name(k), "first_frame": r.start, "nb_frames": len(r)}
            for k, r in enumerate(config_shard_ranges(config))
            if shard_name(k) in done
        ]
        frames_done = sum(s["nb_frames"] for s in manifest["shards"])
    else:
        frames_done = config.nb_frames - len(_missing_frames(out, config))
    manifest["frames_done"] = frames_done
    manifest["complete"] = frames_done == config.nb_frames
    write_manifest(out, manifest)


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
