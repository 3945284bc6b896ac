"""Deployments: one Prefect deployment per environment and phase, on a process work pool.

`deploy(env)` (`phasegate deploy ENV`) makes sure the work pool exists (type `process`,
default name `phasegate`) and creates or updates, for every enabled phase of the environment,
the deployment `migration/ENV-phase-N` of the migration flow, pulled from this repository
(`flows/migration.py:migration`) with parameters `{env, phases: [N]}`. A phase with a
maintenance window (`schedule.phase_windows`) is scheduled by a cron built from the window's
days and start, in the environment's time zone; a phase without one has no schedule and runs
when triggered (UI, `prefect deployment run`, `run_deployment`). Blackout dates and the
phase's estimate are not in the cron: the window guard in the flow refuses those runs.

`serve(env)` (`phasegate serve ENV`) is the all-in-one local mode: the same deployments,
served by this process (no work pool, no worker).

The core never imports a flow: the flow is reached by its entrypoint, as Prefect does.
"""

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phasegate.config import EnvironmentConfig, Window, load_environment
from phasegate.entrypoints import MIGRATION_FLOW, load
from phasegate.errors import PhasegateError
from phasegate.home import REPO_ROOT
from phasegate.status import environment_tag

DEFAULT_POOL = "phasegate"
FLOW_NAME = "migration"
ENTRYPOINT = "flows/migration.py:migration"
# cron day-of-week numbers, 0 = Sunday
_CRON_DAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}


@dataclass(frozen=True)
class PhaseDeployment:
    """What `deploy`/`serve` make for one phase."""

    environment: str
    phase: int
    name: str  # the deployment's name, e.g. "demo-phase-1"
    parameters: dict[str, Any]
    cron: str | None
    timezone: str
    window: str | None
    tags: tuple[str, ...]

    @property
    def full_name(self) -> str:
        """'migration/demo-phase-1', as `prefect deployment run` and `run_deployment` take it."""
        return f"{FLOW_NAME}/{self.name}"

    def describe(self) -> str:
        when = (
            f"cron '{self.cron}' ({self.timezone}, window {self.window!r})"
            if self.cron
            else "no schedule (no window): run it on demand"
        )
        return f"{self.full_name}: {when}"


def window_cron(window: Window) -> str:
    """The cron expression that fires when `window` opens, e.g. '0 2 * * 2,3,4'."""
    hour, minute = (int(part) for part in window.start.split(":"))
    days = ",".join(str(d) for d in sorted({_CRON_DAYS[day] for day in window.days}))
    return f"{minute} {hour} * * {days}"


def deployment_name(environment: str, phase: int) -> str:
    return f"{environment}-phase-{phase}"


def plan_deployments(env: str) -> list[PhaseDeployment]:
    """The deployments for ENV (a name or a path), one per enabled phase; no API call."""
    config = load_environment(env)
    parameter = env if _is_name(env) else str(Path(env).resolve())
    return [_phase_deployment(config, parameter, phase) for phase in config.phases.enabled]


def _is_name(env: str) -> bool:
    """A name stays a name (looked up on the worker, in the repository it runs in); a path
    is made absolute, since the worker's working directory is the repository."""
    return not (env.endswith((".yaml", ".yml")) or "/" in env)


def _phase_deployment(config: EnvironmentConfig, parameter: str, phase: int) -> PhaseDeployment:
    schedule = config.schedule
    window = schedule.phase_windows.get(phase)
    return PhaseDeployment(
        environment=config.name,
        phase=phase,
        name=deployment_name(config.name, phase),
        parameters={"env": parameter, "phases": [phase]},
        cron=window_cron(schedule.windows[window]) if window else None,
        timezone=schedule.timezone,
        window=window,
        tags=(environment_tag(config.name),),
    )


def _schedules(item: PhaseDeployment) -> list[Any]:
    from prefect.schedules import Cron

    return [Cron(item.cron, timezone=item.timezone)] if item.cron else []


def description(item: PhaseDeployment) -> str:
    return (
        f"phasegate: phase {item.phase} of the migration of `{item.environment}` (plan, "
        "approval, phase, health gate). "
        + (
            f"Opens with maintenance window `{item.window}` ({item.cron}, {item.timezone})."
            if item.cron
            else "No maintenance window: triggered on demand."
        )
    )


def ensure_work_pool(name: str = DEFAULT_POOL) -> bool:
    """Create the process work pool `name` unless it exists; True if it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
            return True
    if pool.type != "process":
        raise PhasegateError(
            f"work pool {name!r} exists but is of type {pool.type!r}; phasegate deploys to a "
            "'process' pool: pass --pool with another name"
        )
    return False


def deploy(
    env: str, pool: str = DEFAULT_POOL, source: Path | str = REPO_ROOT
) -> list[PhaseDeployment]:
    """Create or update ENV's deployments on work pool `pool` (created if missing).

    `source` is where workers get the code: this repository (a folder every worker can
    read), or a git URL. Returns what was deployed.
    """
    from prefect import Flow
    from prefect.client.orchestration import get_client

    items = plan_deployments(env)
    ensure_work_pool(pool)
    flow = Flow.from_source(source=str(source), entrypoint=ENTRYPOINT)
    for item in items:
        with contextlib.redirect_stdout(io.StringIO()):  # Prefect's own table; we report
            deployment_id = flow.deploy(
                name=item.name,
                work_pool_name=pool,
                parameters=item.parameters,
                schedules=_schedules(item),
                tags=list(item.tags),
                description=description(item),
                build=False,
                push=False,
                print_next_steps=False,
                ignore_warnings=True,
            )
        if not item.cron:  # a window removed since the last deploy takes its schedule along
            with get_client(sync_client=True) as client:
                for schedule in client.read_deployment(deployment_id).schedules:
                    client.delete_deployment_schedule(deployment_id, schedule.id)
    return items


def serve(env: str, limit: int | None = None) -> None:
    """Serve ENV's deployments from this process until interrupted (the local all-in-one)."""
    from prefect import serve as prefect_serve

    flow = load(MIGRATION_FLOW)
    deployments = [
        flow.to_deployment(
            name=item.name,
            parameters=item.parameters,
            schedules=_schedules(item),
            tags=list(item.tags),
            description=description(item),
        )
        for item in plan_deployments(env)
    ]
    prefect_serve(*deployments, limit=limit, print_starting_message=True)
