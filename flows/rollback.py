"""Undo a phase from its Records, last stage first, and verify each undo."""

from prefect import flow
from prefect.futures import wait

from phasegate.config import load_environment
from tasks.locks import environment_lock
from tasks.registry import stages
from tasks.runner import configured, rollback_step


@flow(name="rollback", flow_run_name="{env}: rollback phase {phase}")
def rollback_phase(env: str, phase: int) -> dict[str, str]:
    """Roll back every step of `phase` that has a Record; step id -> what happened."""
    config = load_environment(env)
    task = configured(rollback_step, config)
    outcome: dict[str, str] = {}
    with environment_lock(config):
        for stage in reversed(stages(phase)):
            futures = {step_id: task.submit(env, step_id) for step_id in reversed(stage)}
            wait(list(futures.values()))
            for step_id, future in futures.items():
                outcome[step_id] = future.result()
    return outcome
