"""Driver process of test_cluster: streams a RayFrameDataset and reports each frame on stdout.

    python tests/cluster_stream.py CONFIG_YAML PAUSE_S

One line per frame, `REPORT {"key", "digest": member -> sha256 of its decoded value (`frame_digest`:
fresh frames arrive decoded, shards hold bytes), "nodes": nodes that rendered so far}`, then `REPORT {"frames_by_node", "replaced"}` (the stream's figures); other lines are Ray's
(actor output goes to the driver's stdout). A driver of its own, so that its Ray connection (token,
cluster) is not the test process's.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time

import numpy as np

from dope_stream.config import GenerateConfig
from dope_stream.exchange import RawSample, decode_members
from dope_stream.stream.dataset import RayFrameDataset

REPORT = "REPORT"


def frame_digest(sample: RawSample) -> dict[str, str]:
    """member -> sha256 of its decoded value (arrays with dtype and shape, the annotation as JSON)."""
    digest = {}
    for name, value in decode_members(sample).items():
        if name.startswith("__"):
            continue
        if isinstance(value, np.ndarray):
            data = f"{value.dtype}{value.shape}".encode() + value.tobytes()
        else:
            data = json.dumps(value, sort_keys=True).encode()
        digest[name] = hashlib.sha256(data).hexdigest()
    return digest


def main(config_file: str, pause_s: float) -> None:
    dataset = RayFrameDataset(GenerateConfig.load(config_file), write_shards=True)
    for sample in dataset:
        digest = frame_digest(sample)
        nodes = len(dataset.last_stream.stats.frames_by_node)
        print(REPORT, json.dumps({"key": sample["__key__"], "digest": digest, "nodes": nodes}), flush=True)
        time.sleep(pause_s)  # a trainer slower than the renderers: the kill lands mid-run
    stats = dataset.last_stream.stats
    print(REPORT, json.dumps({"frames_by_node": stats.frames_by_node, "replaced": stats.replaced_actors}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
