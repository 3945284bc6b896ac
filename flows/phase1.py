"""Phase 1, cost: remove the NAT gateways, move compute to Graviton, right-size RDS and Redis."""

from prefect import flow

from flows.phase import run_phase
from phasegate.config import load_environment
from phasegate.steps import Record
from tasks.locks import environment_lock


@flow(name="phase-1-cost", flow_run_name="{env}: phase 1")
def phase1(env: str) -> list[Record]:
    """nat.assess -> nat.remove -> compute.graviton, with database.resize and cache.resize
    alongside from the start (tasks.registry holds the dependencies)."""
    with environment_lock(load_environment(env)):
        return run_phase(env, 1)
