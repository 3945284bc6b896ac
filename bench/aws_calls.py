"""AWS calls per phase, mutating and read, on the first run and on a re-run.

Seeds one dev environment in an in-process sandbox (a simulator publishes its gate metrics),
then runs the migration flow for each phase that has steps, twice in a row, and counts the
calls the sandbox received for each run (the simulator's own PutMetricData left out). A
re-run finds every step's checkpoint, so it must make no mutating call (target: 0).

    .venv/bin/python bench/aws_calls.py
"""

import sys
from collections import Counter

import requests
import yaml
from sandbox_env import seeded_environment

from flows.migration import migration
from phasegate.checkpoints import checkpoint_storage
from phasegate.sandbox.app import is_mutating
from phasegate.sandbox.simulator import WorkloadSimulator
from tasks.registry import stages

SIMULATOR_CALLS = {"monitoring:PutMetricData"}


def calls(url: str) -> Counter[str]:
    logged = requests.get(f"{url}/_phasegate/calls", timeout=10).json()
    requests.delete(f"{url}/_phasegate/calls", timeout=10)
    return Counter(
        f"{c['service']}:{c['action']}"
        for c in logged
        if f"{c['service']}:{c['action']}" not in SIMULATOR_CALLS
    )


def main() -> int:
    rows = []
    with seeded_environment() as (url, config):
        assert config.source is not None
        data = yaml.safe_load(config.source.read_text())
        data["gates"] = {"interval_seconds": 0.2, "count": 2}  # the gate's rounds, not minutes
        config.source.write_text(yaml.safe_dump(data))
        simulator = WorkloadSimulator(lambda: [config], tick_seconds=0.3).start()
        try:
            calls(url)
            for phase in (n for n in (1, 2, 3) if stages(n)):
                for label in ("first run", "re-run"):
                    with checkpoint_storage(config):
                        migration(str(config.source), [phase], auto_approve=True)
                    made = calls(url)
                    mutating = sum(
                        n for action, n in made.items() if is_mutating(action.split(":")[1])
                    )
                    rows.append((phase, label, sum(made.values()), mutating))
        finally:
            simulator.stop()
    print(f"{'phase':>5}  {'run':<10}{'AWS calls':>10}{'mutating':>10}{'read':>8}")
    for phase, label, total, mutating in rows:
        print(f"{phase:>5}  {label:<10}{total:>10}{mutating:>10}{total - mutating:>8}")
    reruns = [mutating for _, label, _, mutating in rows if label == "re-run"]
    print(f"mutating calls on re-runs: {sum(reruns)} (target 0)")
    return 0 if sum(reruns) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
