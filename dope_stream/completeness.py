"""Is an indexed dataset what its manifest says it is?

A shard cut at a tar block boundary (a partial copy) reads as a shorter, valid tar: without this
check its lost frames vanish silently and the cut frame is used without its masks. `dope generate`'s
manifest lists each finished shard with its frame count and every frame's members, so
`check_against_manifest` refuses a shard holding fewer frames, or a frame lacking a member. Shards
the manifest does not list (another tool's, or one copied in) are not checked; a shard the user
deleted is simply not read.
"""

from __future__ import annotations

from pathlib import Path

from .errors import DopeError

# One indexed source (shard file or folder) -> its samples as (key, member names present).
Indexed = dict[Path, list[tuple[str, set[str]]]]


def check_against_manifest(manifest: dict, manifest_path: Path, indexed: Indexed) -> None:
    """DopeError naming the shard or frame that holds less than `manifest` lists."""
    listed = listed_shard_frames(manifest, manifest_path)
    members = listed_members(manifest, manifest_path)
    for source, samples in indexed.items():
        expected = listed.get(source.name)
        if expected is not None and len(samples) != expected:
            raise DopeError(
                f"{source}: holds {len(samples)} of the {expected} frames {manifest_path} lists for it (truncated or "
                "partly copied?); copy it again, or delete it and re-run the same `dope generate` to render it again"
            )
        for key, present in samples:
            missing = [member for member in members if member not in present]
            if missing:
                raise DopeError(f"{source}: frame {key} lacks {', '.join(missing)}, which {manifest_path} lists for every frame")


def listed_shard_frames(manifest: dict, manifest_path: Path) -> dict[str, int]:
    """Shard file name -> frames it holds, from the manifest's `shards` list (empty without one)."""
    shards = manifest.get("shards", [])
    if not isinstance(shards, list) or not all(
        isinstance(s, dict) and isinstance(s.get("name"), str) and type(s.get("nb_frames")) is int for s in shards
    ):
        raise DopeError(f"{manifest_path}: field 'shards' must be a list of {{name, nb_frames}} entries")
    return {s["name"]: s["nb_frames"] for s in shards}


def listed_members(manifest: dict, manifest_path: Path) -> list[str]:
    """The members every frame has (`jpg`, `seg.png`, ...), from the manifest (empty without them)."""
    members = manifest.get("members", [])
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise DopeError(f"{manifest_path}: field 'members' must be a list of member names")
    return members
