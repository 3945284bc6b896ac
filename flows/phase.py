"""Running one phase: its stages in order, the steps of a stage concurrently.

A failed step stops the phase. With `phases.on_step_failure: rollback` the phase's finished
steps are undone from their Records (newest first) before the failure is reported; with
`stop` everything stays where it is for an operator, and a re-run resumes from the
checkpoints.
"""

from prefect.futures import wait

from flows.rollback import rollback_phase
from phasegate.config import load_environment
from phasegate.errors import PhaseFailed
from phasegate.steps import Record
from tasks.registry import stages
from tasks.runner import checkpoint_key, configured, run_step


def run_phase(env: str, phase: int) -> list[Record]:
    """Run `phase` on `env` inside the calling flow; the Records of its steps, in order."""
    config = load_environment(env)
    step_task = configured(run_step, config)
    records: list[Record] = []
    for stage in stages(phase):
        keys = {step_id: checkpoint_key(env, step_id) for step_id in stage}
        futures = {step_id: step_task.submit(env, step_id, keys[step_id]) for step_id in stage}
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
