"""Two-process DDP on CPU (gloo), as torchrun would start it: each rank trains on its own share."""

import json
import os
import socket
from pathlib import Path

import torch.multiprocessing as mp
from toy_dataset import write_folder

from trainer.checkpoint import list_checkpoints, read_checkpoint
from trainer.config import TrainConfig

WORLD_SIZE = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, data: str, out: str, port: int) -> None:
    # The variables torchrun sets for each process.
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD_SIZE),
    )
    from trainer.loop import train

    config = TrainConfig(
        data=[Path(data)], val_fraction=0, net="light", stages=1, epochs=2, batch_size=2, image_size=64,
        out=Path(out), workers=0, amp=False, device="cpu", seed=3,
    )
    summary = train(config)
    Path(out, f"rank{rank}.json").write_text(json.dumps({"keys": summary.keys_seen, "steps": summary.steps}))


def test_two_process_ddp_splits_the_data(tmp_path):
    data = write_folder(tmp_path / "data", 8, size=64)
    mp.spawn(_rank_main, args=(str(data), str(tmp_path / "run"), _free_port()), nprocs=WORLD_SIZE, join=True)
    ranks = [json.loads((tmp_path / "run" / f"rank{r}.json").read_text()) for r in range(WORLD_SIZE)]
    assert [r["steps"] for r in ranks] == [4, 4]  # 2 epochs x (8 samples / 2 ranks / batch 2)
    for epoch in range(2):
        shares = [set(r["keys"][4 * epoch : 4 * epoch + 4]) for r in ranks]
        assert not shares[0] & shares[1]  # each rank sees different data
        assert shares[0] | shares[1] == {f"{i:06d}" for i in range(8)}  # together: the whole epoch
    assert ranks[0]["keys"][:4] != ranks[0]["keys"][4:]  # reshuffled per epoch
    checkpoint = read_checkpoint(list_checkpoints(tmp_path / "run")[-1])  # written by rank 0 only
    assert (checkpoint["step"], checkpoint["epoch"]) == (4, 2)
