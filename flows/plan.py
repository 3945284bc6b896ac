"""What each phase would change now: observe and plan every step, read-only, no Prefect run."""

from phasegate.config import load_environment
from phasegate.lifecycle import plan
from phasegate.steps import Change, StepContext
from tasks.registry import STEPS, stages


def plan_phases(env: str, phases: list[int]) -> dict[int, list[tuple[str, Change | None]]]:
    """Phase -> (step id, its Change or None when there is nothing to do), in run order."""
    ctx = StepContext.for_environment(load_environment(env))
    return {
        phase: [
            (step_id, plan(STEPS[step_id](ctx))) for stage in stages(phase) for step_id in stage
        ]
        for phase in phases
    }
