"""Many SIGKILLs at random moments: how many killed runs resumed to a result identical to an
uninterrupted run, with no process left behind.

    python -m benchmarks.bench_faults [--kills 50] [--seed 0] [--scenarios generate-shards train ...]

Run from the repository root (the scenarios live in tests/faults.py, shared with tests/test_faults.py).
The kills are spread evenly over the scenarios; each kill comes once a random number of the run's
output files are finished, after a further random delay of up to 0.5 s.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.faults import kill_once, scenarios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scenarios", nargs="+", default=None, help="names from tests/faults.py (default: all)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench_faults-") as folder:
        work = Path(folder)
        chosen = [scenarios(work)[name] for name in args.scenarios] if args.scenarios else list(scenarios(work).values())
        identical, mid_run, tried = Counter(), Counter(), Counter()
        start = time.perf_counter()
        for kill in range(args.kills):
            scenario = chosen[kill % len(chosen)]
            result = kill_once(scenario, work, scenario.reference_in(work), rng)
            tried[scenario.name] += 1
            mid_run[scenario.name] += result.killed_after >= 0
            identical[scenario.name] += result.identical
            status = "identical" if result.identical else f"FAILED {result.orphans or result.differences or result.rerun_code}"
            print(f"{kill + 1:3d} {scenario.name:<26} killed after {result.killed_after:2d}/{scenario.total} files: {status}", flush=True)
        print(f"\n{time.perf_counter() - start:.0f} s; killed mid-run and resumed identical, no process left:")
        for name in tried:
            print(f"  {name:<26} {identical[name]}/{mid_run[name]} (of {tried[name]} kills; the rest came after the run ended)")
        print(f"  {'all':<26} {sum(identical.values())}/{sum(mid_run.values())}")


if __name__ == "__main__":
    main()
