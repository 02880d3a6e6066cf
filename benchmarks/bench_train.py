"""Training throughput: `dope` vs `light` at equal input size, and a combined --stream run.

    python benchmarks/bench_train.py [--size 400] [--batch 8] [--rounds 3] [--amp] [--device cuda]
    python benchmarks/bench_train.py --stream STREAM.yaml [--stream-steps 20]

Part 1 times full optimisation steps (forward over all stages, the network's own loss, backward,
AdamW) on random images and real-shaped targets, interleaving the two networks after a warm-up step,
and prints images/s for both (wall clock and per CPU-second) and their ratio (target: light >= 25x
dope). Part 2 trains `light` on the live
stream of a `dope generate` config and prints training images/s and the share of time the trainer
waited for frames.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from pathlib import Path

from dope_app.environment import passive_openmp_wait

passive_openmp_wait()  # as `dope train` runs (set before torch loads OpenMP)

import torch  # noqa: E402

from trainer.networks import build_network, count_parameters, network_spec  # noqa: E402


class StepTimer:
    """One network's training step on random images and real-shaped targets."""

    def __init__(self, net: str, size: int, batch: int, amp: bool, device: torch.device):
        torch.manual_seed(0)
        self.net, self.batch, self.amp, self.device = net, batch, amp, device
        # light as trained by default (ImageNet encoder, early layers frozen); dope has no weights offline
        model = build_network(net, pretrained=net == "light").to(device)
        self.model = model.to(memory_format=torch.channels_last).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
        self.spec = network_spec(net)
        cells = size // self.spec.stride
        maps = functools.partial(torch.rand, batch, device=device)
        self.targets = {"belief": maps(9, cells, cells), "affinity": maps(16, cells, cells) * 2 - 1}
        if self.spec.offset_scale is not None:
            self.targets.update(offsets=torch.randn(batch, 16, cells, cells, device=device),
                                offset_weight=torch.ones(batch, 1, cells, cells, device=device))
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def step(self, record: bool = True) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            loss = self.spec.loss(self.spec.forward(self.model, self.x), self.targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # kernels run asynchronously: time the finished step
        if record:
            self.wall.append(time.perf_counter() - wall)
            self.cpu.append(time.process_time() - cpu)

    def report(self) -> tuple[float, float]:
        """Images/s by wall clock and by this process's CPU time (medians; CPU time is less
        sensitive to other jobs sharing the machine)."""
        wall, cpu = statistics.median(self.wall), statistics.median(self.cpu)
        print(f"{self.net:>5}: {count_parameters(self.model) / 1e6:5.1f} M params, {wall:7.2f} s/step wall "
              f"({self.batch / wall:6.2f} img/s), {cpu:7.2f} CPU-s/step ({self.batch / cpu:6.2f} img/CPU-s)")
        return self.batch / wall, self.batch / cpu


def compare(size: int, batch: int, rounds: int, light_per_round: int, amp: bool, device: torch.device) -> None:
    """Interleaved rounds (one dope step, then a few light steps), so both see the same machine load."""
    light, dope = StepTimer("light", size, batch, amp, device), StepTimer("dope", size, batch, amp, device)
    light.step(record=False)  # warm-up: allocators, kernels
    dope.step(record=False)
    for _ in range(rounds):
        dope.step()
        for _ in range(light_per_round):
            light.step()
    light_wall, light_cpu = light.report()
    dope_wall, dope_cpu = dope.report()
    print(f"light / dope throughput: {light_wall / dope_wall:.1f}x wall, {light_cpu / dope_cpu:.1f}x CPU time (target >= 25x)")


def stream_run(stream_config: Path, steps: int, size: int, batch: int, workers: int) -> None:
    from dope_stream.stream.session import disconnect
    from dope_stream.config import GenerateConfig
    from trainer.config import TrainConfig
    from trainer.loop import train

    with tempfile.TemporaryDirectory() as run:
        config = TrainConfig(
            stream=GenerateConfig.load(stream_config), net="light", epochs=1000, max_steps=steps, batch_size=batch, image_size=size,
            out=Path(run), loader_workers=workers, amp=False, save_every=10**9,
        )
        try:
            summary = train(config)
        finally:
            disconnect()
    rate = summary.images / (summary.wait_s + summary.train_s)
    print(f"stream: {summary.images} images in {summary.wait_s + summary.train_s:.1f} s -> {rate:.2f} img/s; "
          f"waiting for frames {100 * summary.wait_share:.0f}% of the time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="timed dope steps (~30-45 s each on 2 cores)")
    parser.add_argument("--light-per-round", type=int, default=3, help="timed light steps after each dope step")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (slower than fp32 on CPUs without AMX)")
    parser.add_argument("--device", default="cpu", help="torch device of part 1 (cpu, cuda, cuda:1)")
    parser.add_argument("--stream", type=Path, help="GenerateConfig YAML for the combined generate-and-train run")
    parser.add_argument("--stream-steps", type=int, default=20)
    parser.add_argument("--stream-workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, one per core)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.stream:
        stream_run(args.stream, args.stream_steps, args.size, args.batch, args.stream_workers)
        return
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch finds no CUDA device")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"training throughput at {args.size}x{args.size}, batch {args.batch}, {where}, amp={args.amp}")
    compare(args.size, args.batch, args.rounds, args.light_per_round, args.amp, device)


if __name__ == "__main__":
    main()
