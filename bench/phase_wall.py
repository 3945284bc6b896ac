"""Phase 1's wall time against its critical path, with the sandbox taking time like AWS.

A phase runs its steps as a DAG (tasks.registry), so its wall time should approach its longest
dependency chain of AWS time, not the sum of its steps. This seeds one environment in an
in-process sandbox at factor 0, turns the latency model on (phasegate/sandbox/latency.py,
`--factor`, default 0.1: an RDS resize takes 30 s), runs the phase 1 flow once and prints, from
this one run:

- the simulated AWS time of each step: the latency model's durations of the transitions the
  step waits through (`WAITS_THROUGH`, scaled by the factor);
- the critical path (the longest dependency chain of those times) and their sum;
- each step's own measured time (its ledger Record, start to finish);
- wall / critical path (target: at most 1.15) and wall / sum.

    .venv/bin/python bench/phase_wall.py [--factor 0.1]
"""

import argparse
import sys
import time

import requests
from sandbox_env import seeded_environment

from flows.phase1 import phase1
from phasegate.checkpoints import checkpoint_storage
from phasegate.ledger import Ledger
from tasks.registry import dependencies

TARGET = 1.15

# The latency model's transitions (keys of its base_seconds) each step waits through.
WAITS_THROUGH = {
    "nat.assess": [],
    "nat.remove": ["ecs.deploy", "nat.delete"],  # tasks move to public subnets, NATs go
    "compute.graviton": ["ecs.deploy"],  # the ARM64 revision rolls out
    "database.resize": ["rds.snapshot", "rds.modify"],
    "cache.resize": ["cache.snapshot", "cache.modify"],
}


def critical_path(cost: dict[str, float], after: dict[str, tuple[str, ...]]) -> float:
    """The longest dependency chain of `cost` through the DAG `after`."""
    finish: dict[str, float] = {}

    def end(step: str) -> float:
        if step not in finish:
            finish[step] = cost[step] + max((end(d) for d in after[step]), default=0.0)
        return finish[step]

    return max(end(step) for step in after)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factor", type=float, default=0.1, help="latency model factor")
    factor = parser.parse_args().factor
    with seeded_environment() as (url, config):
        answer = requests.post(f"{url}/_phasegate/latency", json={"factor": factor}, timeout=10)
        base_seconds = answer.json()["base_seconds"]
        start = time.perf_counter()
        with checkpoint_storage(config):
            phase1(str(config.source))
        wall = time.perf_counter() - start
        ledger = Ledger(config)
        measured = {
            step: next(
                r.duration_seconds
                for r in reversed(ledger.chain(1, step))
                if r.outcome in ("applied", "unchanged")
            )
            for step in WAITS_THROUGH
        }
    simulated = {
        step: sum(base_seconds[key] * factor for key in keys)
        for step, keys in WAITS_THROUGH.items()
    }
    after = dependencies(1)
    critical, total = critical_path(simulated, after), sum(simulated.values())
    print(f"latency factor {factor}")
    print(f"{'step':<20}{'after':<22}{'simulated AWS s':>16}{'measured s':>12}")
    for step in after:
        print(
            f"{step:<20}{', '.join(after[step]) or '-':<22}"
            f"{simulated[step]:>16.1f}{measured[step]:>12.1f}"
        )
    print(f"critical path (longest chain of simulated AWS time): {critical:.1f} s")
    print(f"sum of all steps' simulated AWS time:               {total:.1f} s")
    print(f"phase 1 wall time:                                  {wall:.1f} s")
    print(f"wall / critical path: {wall / critical:.2f} (target <= {TARGET})")
    print(f"wall / sum of steps:  {wall / total:.2f}")
    return 0 if wall / critical <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
