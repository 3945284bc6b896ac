"""Running one phase: its steps as a DAG, each started as soon as the steps it runs after end.

A failed step stops the phase: nothing new starts, the steps already running finish, then
with `phases.on_step_failure: rollback` the phase is rolled back from its ledger (the failed
step's half-applied change included); with `stop` everything stays where it is for an
operator, and a re-run resumes from the ledger. Before a step the policy wants approved on
its own (prod: nat.remove), the run waits for the running steps to end and pauses for that
approval: a suspended run exits its process, and no step may be mid-apply then.
"""

from typing import Protocol

from prefect.futures import PrefectFuture, wait

from flows.rollback import rollback_phase
from phasegate.config import load_environment
from phasegate.errors import PhaseFailed
from phasegate.steps import Record
from phasegate.terraform.drift import check_before_phase
from tasks.approvals import Approval
from tasks.registry import dependencies
from tasks.runner import checkpoint_key, configured, run_step

_POLL_SECONDS = 0.1


class StepApprovals(Protocol):
    """Who approves a step on its own: `needed(step)` says whether it pauses, the call asks."""

    def needed(self, step_id: str) -> bool: ...

    def __call__(self, step_id: str) -> Approval | None: ...


def run_phase(
    env: str,
    phase: int,
    approval: Approval | None = None,
    approve_step: StepApprovals | None = None,
    approved: dict[str, str] | None = None,
) -> list[Record]:
    """Run `phase` on `env` inside the calling flow; the Records of its steps, in registry order.

    `approval` (who approved the phase) is stamped on the Records; `approve_step(step_id)`
    is asked before each step and may pause or raise to stop the phase there; `approved`
    maps step ids to the digests of the approved changes (a step whose change differs now
    stops before changing anything).
    """
    config = load_environment(env)
    check_before_phase(config, phase)
    step_task = configured(run_step, config)
    after = dependencies(phase)
    waiting = list(after)
    running: dict[str, PrefectFuture[Record]] = {}
    done: set[str] = set()
    records: list[Record] = []
    failures: dict[str, BaseException] = {}
    while waiting or running:
        ready = [s for s in waiting if set(after[s]) <= done] if not failures else []
        for step_id in ready:
            if approve_step is not None and running and approve_step.needed(step_id):
                break  # let the running steps end before the run may suspend
            waiting.remove(step_id)
            granted = (approve_step(step_id) if approve_step else None) or approval
            running[step_id] = step_task.submit(
                env,
                step_id,
                checkpoint_key.submit(env, step_id),
                approver=granted.approver if granted else None,
                comment=granted.comment if granted else None,
                approved_digest=(approved or {}).get(step_id),
            )
        if failures and not running:
            break
        ended = wait(list(running.values()), timeout=_POLL_SECONDS).done
        for step_id in [s for s, f in running.items() if f in ended]:
            future = running.pop(step_id)
            try:
                records.append(future.result())
                done.add(step_id)
            except Exception as exc:
                failures[step_id] = exc
    if failures:
        step_id, exc = next(iter(failures.items()))
        if config.phases.on_step_failure == "rollback":
            rollback_phase(env, phase)
            then = "the phase was rolled back from its ledger"
        else:
            then = "the phase stopped where it was; a re-run resumes from the ledger"
        raise PhaseFailed(f"{config.name}: phase {phase} failed at {step_id}: {exc}; {then}")
    order = list(after)
    return sorted(records, key=lambda r: order.index(r.step))
