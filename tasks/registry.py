"""Every migration step, and the order each phase runs them in.

Adding a step is one Step class in the right tasks/ module plus one line here. Steps in the
same stage are independent and run concurrently; stages run one after another.
"""

from phasegate.steps import Step
from tasks.cache import CacheResize
from tasks.compute import GravitonCompute
from tasks.database import DatabaseResize
from tasks.network import NatAssessment, NatRemoval

PHASE_STAGES: dict[int, list[list[type[Step]]]] = {
    1: [[NatAssessment], [NatRemoval], [GravitonCompute], [DatabaseResize, CacheResize]],
}

PHASE_NAMES = {1: "cost", 2: "architecture", 3: "advanced"}

STEPS: dict[str, type[Step]] = {
    step.id: step for stages in PHASE_STAGES.values() for stage in stages for step in stage
}


def stages(phase: int) -> list[list[str]]:
    """The step ids of `phase`, stage by stage; empty for a phase with no steps yet."""
    return [[step.id for step in stage] for stage in PHASE_STAGES.get(phase, [])]
