"""Running one phase: its stages in order, the steps of a stage concurrently.

A failed step stops the phase. With `phases.on_step_failure: rollback` the phase's finished
steps are undone from their Records (newest first) before the failure is reported; with
`stop` everything stays where it is for an operator, and a re-run resumes from the
checkpoints. Before a step the policy wants approved on its own (prod: nat.remove), the run
pauses for that approval too.
"""

from collections.abc import Callable

from prefect.futures import wait

from flows.rollback import rollback_phase
from phasegate.config import load_environment
from phasegate.errors import PhaseFailed
from phasegate.steps import Record
from tasks.approvals import Approval
from tasks.registry import stages
from tasks.runner import checkpoint_key, configured, run_step

StepApproval = Callable[[str], Approval]


def run_phase(
    env: str,
    phase: int,
    approval: Approval | None = None,
    approve_step: StepApproval | None = None,
) -> list[Record]:
    """Run `phase` on `env` inside the calling flow; the Records of its steps, in order.

    `approval` (who approved the phase) is stamped on the Records; `approve_step(step_id)`
    is asked before each step and may pause or raise to stop the phase there.
    """
    config = load_environment(env)
    step_task = configured(run_step, config)
    records: list[Record] = []
    for stage in stages(phase):
        keys = {step_id: checkpoint_key(env, step_id) for step_id in stage}
        approvals = {
            step_id: (approve_step(step_id) if approve_step else None) or approval
            for step_id in stage
        }
        futures = {
            step_id: step_task.submit(
                env,
                step_id,
                keys[step_id],
                approver=approvals[step_id].approver if approvals[step_id] else None,
                comment=approvals[step_id].comment if approvals[step_id] else None,
            )
            for step_id in stage
        }
        wait(list(futures.values()))
        failures = {}
        for step_id, future in futures.items():
            try:
                records.append(future.result())
            except Exception as exc:
                failures[step_id] = exc
        if failures:
            step_id, exc = next(iter(failures.items()))
            if config.phases.on_step_failure == "rollback":
                rollback_phase(env, phase)
                then = "its finished steps were rolled back"
            else:
                then = "the phase stopped where it was; a re-run resumes from the checkpoints"
            raise PhaseFailed(f"{config.name}: phase {phase} failed at {step_id}: {exc}; {then}")
    return records
