"""Phase 2, architecture: autoscaling, monitoring and alerting, database connection tuning."""

from prefect import flow

from flows.phase import run_phase
from phasegate.config import load_environment
from phasegate.steps import Record
from tasks.locks import environment_lock


@flow(name="phase-2-architecture", flow_run_name="{env}: phase 2")
def phase2(env: str) -> list[Record]:
    """scaling.enable -> monitoring.enable (its at-max alarm uses the scaling bounds), with
    database.connections alongside from the start (tasks.registry holds the dependencies)."""
    with environment_lock(load_environment(env)):
        return run_phase(env, 2)
