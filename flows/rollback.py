"""Undo a phase from its ledger: dependents before what they depend on, each step walked back
to before phasegate first touched it, and each undo verified."""

from prefect import flow
from prefect.futures import wait

from phasegate.config import load_environment
from tasks.locks import environment_lock
from tasks.registry import stages
from tasks.runner import configured, rollback_step


@flow(name="rollback", flow_run_name="{env}: rollback phase {phase}")
def rollback_phase(env: str, phase: int) -> dict[str, str]:
    """Roll back every step of `phase` with something to undo; step id -> what happened."""
    config = load_environment(env)
    task = configured(rollback_step, config)
    outcome: dict[str, str] = {}
    with environment_lock(config):
        for level in reversed(stages(phase)):
            futures = {step_id: task.submit(env, step_id) for step_id in reversed(level)}
            wait(list(futures.values()))
            for step_id, future in futures.items():
                outcome[step_id] = future.result()
    return outcome
