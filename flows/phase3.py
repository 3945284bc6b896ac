"""Phase 3, advanced: Spot capacity for the services marked non-critical, a CDN, and a standby
copy in a second region (regions.expand's sub-steps)."""

from prefect import flow

from flows.phase import run_phase
from phasegate.config import load_environment
from phasegate.steps import Record
from tasks.locks import environment_lock


@flow(name="phase-3-advanced", flow_run_name="{env}: phase 3")
def phase3(env: str) -> list[Record]:
    """spot.enable, cdn.enable and regions.expand's chain (network, alb, then database, cache
    and compute side by side, then dns) run as a DAG (tasks.registry holds the phase's steps
    and their dependencies)."""
    with environment_lock(load_environment(env)):
        return run_phase(env, 3)
