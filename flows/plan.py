"""What each phase would change now: observe and plan every step, read-only, no Prefect run."""

from phasegate.steps import Change
from tasks.runner import planned_changes


def plan_phases(env: str, phases: list[int]) -> dict[int, list[tuple[str, Change | None]]]:
    """Phase -> (step id, its Change or None when there is nothing to do), in run order."""
    return {phase: planned_changes(env, phase) for phase in phases}
