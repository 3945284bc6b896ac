"""Every migration step, by phase; each step declares the steps it runs after (`Step.after`).

Adding a step is one Step class in its own tasks/ module plus one line here. A phase runs its
steps as a DAG: a step starts as soon as the steps it names in `after` have finished, so
independent steps (database.resize, cache.resize, nat.assess) run concurrently and a phase's
wall time approaches its longest dependency chain, not the sum of its steps.
"""

from graphlib import CycleError, TopologicalSorter

from phasegate.steps import Step
from tasks.cache import CacheResize
from tasks.cdn import CdnEnable
from tasks.compute import GravitonCompute
from tasks.database import DatabaseResize
from tasks.db_connections import DatabaseConnections
from tasks.monitoring import MonitoringEnable
from tasks.nat_assess import NatAssessment
from tasks.nat_remove import NatRemoval
from tasks.region_alb import RegionAlb
from tasks.region_cache import RegionCache
from tasks.region_compute import RegionCompute
from tasks.region_database import RegionDatabase
from tasks.region_dns import RegionDns
from tasks.region_network import RegionNetwork
from tasks.scaling import ScalingEnable
from tasks.spot import SpotEnable

PHASE_STEPS: dict[int, list[type[Step]]] = {
    1: [NatAssessment, NatRemoval, GravitonCompute, DatabaseResize, CacheResize],
    2: [ScalingEnable, MonitoringEnable, DatabaseConnections],
    3: [
        SpotEnable,
        CdnEnable,
        RegionNetwork,
        RegionAlb,
        RegionDatabase,
        RegionCache,
        RegionCompute,
        RegionDns,
    ],
}

PHASE_NAMES = {1: "cost", 2: "architecture", 3: "advanced"}

STEPS: dict[str, type[Step]] = {step.id: step for steps in PHASE_STEPS.values() for step in steps}


def _check(phase: int, steps: list[type[Step]]) -> TopologicalSorter[str]:
    """The phase's dependency graph; a bad `after` is a programming error caught at import."""
    ids = {s.id for s in steps}
    graph: TopologicalSorter[str] = TopologicalSorter()
    for step in steps:
        unknown = set(step.after) - ids
        if unknown:
            raise RuntimeError(
                f"step {step.id} (phase {phase}) runs after {sorted(unknown)}, "
                "which are not steps of its phase"
            )
        graph.add(step.id, *step.after)
    return graph


def dependencies(phase: int) -> dict[str, tuple[str, ...]]:
    """Step id -> the step ids it runs after, in registry order."""
    return {step.id: step.after for step in PHASE_STEPS.get(phase, [])}


def stages(phase: int) -> list[list[str]]:
    """The phase's steps in dependency levels: every step of a level can start once the
    levels before it finished (for display and plans; runs start each step as soon as its
    own dependencies finish). Empty for a phase with no steps yet."""
    graph = _check(phase, PHASE_STEPS.get(phase, []))
    order = list(dependencies(phase))
    try:
        graph.prepare()
    except CycleError as exc:
        raise RuntimeError(f"phase {phase} steps depend on each other in a cycle: {exc}") from exc
    levels = []
    while graph.is_active():
        ready = sorted(graph.get_ready(), key=order.index)
        levels.append(ready)
        graph.done(*ready)
    return levels


def ordered(phase: int) -> list[str]:
    """The phase's step ids, each after the steps it depends on."""
    return [step_id for level in stages(phase) for step_id in level]


for _phase in PHASE_STEPS:
    stages(_phase)  # a bad `after` or a cycle fails here, at import, not in a run
