"""What a checkpoint saves: phase 1 run fresh vs run again on the same environment.

Seeds one environment in an in-process sandbox, runs the phase 1 flow twice in this process
and prints, side by side from this one run, the wall time and the AWS calls each made (counted
at the sandbox server). The second run re-verifies every Record (read-only) and skips the
steps, so it must make no mutating call; the time ratio is what resuming costs relative to
doing the work (in the sandbox, where AWS waits are instant, this understates the saving).

    .venv/bin/python bench/rerun_cost.py
"""

import sys
import time

import requests
from sandbox_env import seeded_environment

from flows.phase1 import phase1
from phasegate.checkpoints import checkpoint_storage
from phasegate.sandbox.app import is_mutating


def calls(url: str) -> tuple[int, int]:
    logged = requests.get(f"{url}/_phasegate/calls", timeout=10).json()
    requests.delete(f"{url}/_phasegate/calls", timeout=10)
    return len(logged), sum(1 for c in logged if is_mutating(c["action"]))


def main() -> int:
    with seeded_environment() as (url, config):
        calls(url)
        rows = []
        for label in ("first run (applies)", "second run (checkpoints)"):
            start = time.perf_counter()
            with checkpoint_storage(config):
                phase1(str(config.source))
            elapsed = time.perf_counter() - start
            total, mutating = calls(url)
            rows.append((label, elapsed, total, mutating))
    print(f"{'run':<28}{'seconds':>10}{'AWS calls':>12}{'mutating':>10}")
    for label, elapsed, total, mutating in rows:
        print(f"{label:<28}{elapsed:>10.2f}{total:>12}{mutating:>10}")
    first, second = rows
    print(f"second/first time ratio: {second[1] / first[1]:.2f}")
    print(f"second/first AWS call ratio: {second[2] / first[2]:.2f}")
    return 0 if second[3] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
