"""Undo a phase from its ledger: dependents before what they depend on, each step walked back
to before phasegate first touched it, and each undo verified.

Asked for by an operator (`phasegate rollback`), the rollback first shows what it will undo
and restore and asks as a run does (tier policy); a migration rolling back its own failed
phase does not ask again.
"""

from prefect import flow
from prefect.futures import wait

from phasegate.config import load_environment
from tasks.approvals import approval_gate
from tasks.locks import environment_lock
from tasks.registry import stages
from tasks.runner import configured, rollback_preview, rollback_step


@flow(name="rollback", flow_run_name="{env}: rollback phase {phase}")
def rollback_phase(
    env: str, phase: int, ask: bool = False, auto_approve: bool = False
) -> dict[str, str]:
    """Roll back every step of `phase` with something to undo; step id -> what happened.

    With `ask`, the rollback plan goes through the tier policy's approval first (a rejection
    raises ApprovalRejected, and nothing is rolled back).
    """
    config = load_environment(env)
    task = configured(rollback_step, config)
    outcome: dict[str, str] = {}
    with environment_lock(config):
        if ask:
            preview = rollback_preview(env, phase)
            if any(change is not None for _, change in preview):
                approval_gate(
                    config, phase, preview, auto_approve_flag=auto_approve,
                    note=f"this is a rollback of phase {phase}: it restores the state from "
                    "before phasegate first touched each step",
                )  # fmt: skip
        for level in reversed(stages(phase)):
            futures = {step_id: task.submit(env, step_id) for step_id in reversed(level)}
            wait(list(futures.values()))
            for step_id, future in futures.items():
                outcome[step_id] = future.result()
    return outcome
