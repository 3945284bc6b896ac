"""Phase 3, advanced: Spot capacity for the services marked non-critical, and a CDN."""

from prefect import flow

from flows.phase import run_phase
from phasegate.config import load_environment
from phasegate.steps import Record
from tasks.locks import environment_lock


@flow(name="phase-3-advanced", flow_run_name="{env}: phase 3")
def phase3(env: str) -> list[Record]:
    """spot.enable and cdn.enable, independent of each other, so they run side by side
    (tasks.registry holds the phase's steps and their dependencies)."""
    with environment_lock(load_environment(env)):
        return run_phase(env, 3)
