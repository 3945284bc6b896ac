"""AWS reads per step of phase 1, by stage, as the migration makes them: where the reads go.

Seeds one dev environment in an in-process sandbox and walks phase 1 the way a run does
(tasks/runner.py and flows/migration.py), without Prefect around it: the cost snapshot before,
`plan_phase` (every step observed and planned), `confirm_plan` (each changing step planned
again), then per step in dependency order its checkpoint and its execution (plan, apply,
verify), and the cost snapshot after. Each stage's calls are read from the sandbox's call
log (nothing else calls it meanwhile); the most repeated reads of the whole phase are listed,
and the plain runbook's count is printed beside it for scale.

    .venv/bin/python bench/step_reads.py
"""

import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import requests
from sandbox_env import seeded_environment

from phasegate.checkpoints import checkpoint_storage
from phasegate.ledger import Ledger
from phasegate.lifecycle import checkpoint, execute, plan
from phasegate.sandbox.app import is_mutating
from phasegate.steps import one_reading
from tasks.registry import ordered
from tasks.reporting import cost_snapshot
from tasks.runner import step_for

RUNBOOK_READS = 15  # bench/overhead.py's runbook: one discovery, no verification


def read_calls(url: str) -> list[str]:
    """The reads the sandbox logged since the last call; the log is cleared."""
    logged = requests.get(f"{url}/_phasegate/calls", timeout=10).json()
    requests.delete(f"{url}/_phasegate/calls", timeout=10).raise_for_status()
    return [f"{c['service']}:{c['action']}" for c in logged if not is_mutating(c["action"])]


def main() -> int:
    rows: list[tuple[str, str, int]] = []
    every: Counter[str] = Counter()

    with seeded_environment() as (url, config), checkpoint_storage(config):

        def measure(step: str, stage: str, action: Callable[[], Any]) -> Any:
            read_calls(url)
            result = action()
            calls = read_calls(url)
            rows.append((step, stage, len(calls)))
            every.update(calls)
            return result

        env = str(config.source)
        ledger = Ledger(config)
        measure("-", "cost snapshot before", lambda: cost_snapshot.fn(env))
        with one_reading():  # as planned_changes and confirm_plan do
            changes = {
                s: measure(s, "plan_phase", lambda s=s: plan(step_for(env, s))) for s in ordered(1)
            }
        with one_reading():
            for step_id, change in changes.items():
                if change is not None and change.actions:
                    measure(step_id, "confirm_plan", lambda s=step_id: plan(step_for(env, s)))
        for step_id in ordered(1):
            measure(step_id, "checkpoint", lambda s=step_id: checkpoint(step_for(env, s), ledger))
            key = f"bench/{step_id}"
            measure(
                step_id, "execute", lambda s=step_id, k=key: execute(step_for(env, s), k, ledger)
            )
        measure("-", "cost snapshot after", lambda: cost_snapshot.fn(env))
    print(f"{'step':<18}{'stage':<24}{'reads':>6}")
    for step, stage, count in rows:
        print(f"{step:<18}{stage:<24}{count:>6}")
    total = sum(count for _, _, count in rows)
    print(f"total reads: {total} (plain runbook: about {RUNBOOK_READS})")
    print("most repeated reads:", ", ".join(f"{c} x{n}" for c, n in every.most_common(8)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
