"""`phasegate fleet plan|run|status`: the migration over many environments, from the CLI.

Mounted by the main CLI as a sub-app. `plan` reads AWS only; `run` needs a Prefect server
with workers on the fleet's work pool (each environment runs as its own deployment run);
`status` reads the newest fleet summary from the Prefect API.
"""

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from phasegate import entrypoints
from phasegate.errors import ConfigError, PhasegateError
from phasegate.fleet import (
    EnvironmentOutcome,
    FleetSummary,
    load_fleet_settings,
    parse_phases,
    select_environments,
    waves_of,
)
from phasegate.prefect_api import prefect_api, require_api

app = typer.Typer(
    help="Migrate many environments: waves, max_concurrency, max_errors, one summary.",
    no_args_is_help=True,
)
_out = Console()
_err = Console(stderr=True, soft_wrap=True)

FLEET_FLOW = "flows.fleet:fleet"
SelectOpt = Annotated[
    list[str],
    typer.Option(
        "--select", help="KEY=PATTERN (name, tier, region, tag.KEY; globs); repeat to AND"
    ),
]
PhasesOpt = Annotated[str, typer.Option("--phases", help="Phases to run, e.g. 1 or 1,2")]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="Fleet settings (default config/fleet.yaml)")
]
DirsOpt = Annotated[
    list[Path],
    typer.Option(
        "--environments-dir",
        help="Where environment files are (default: the sandbox's, then config/environments)",
    ),
]


def _fail(exc: PhasegateError) -> typer.Exit:
    _err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
    return typer.Exit(exc.exit_code)


def outcome_table(title: str, outcomes: list[EnvironmentOutcome], saving: float) -> Table:
    table = Table(title=title, title_justify="left")
    header, *rows = FleetSummary(
        selectors=[], phases=[], max_concurrency=1, error_threshold=0, environments=outcomes
    ).rows()
    for name in header:
        table.add_column(name, justify="right" if "$" in name else "left")
    for row in rows:
        table.add_row(*row)
    table.caption = f"total monthly saving ${saving:,.2f}"
    return table


@app.command()
def plan(
    select: SelectOpt = [],  # noqa: B006 (typer reads the default, never mutates it)
    phases: PhasesOpt = "1",
    config: ConfigOpt = None,
    environments_dir: DirsOpt = [],  # noqa: B006
) -> None:
    """The waves, their environments and each one's planned monthly cost delta; changes nothing."""
    try:
        settings = load_fleet_settings(config)
        numbers = parse_phases(phases)
        chosen = select_environments(select, environments_dir or None)
        waves = waves_of(chosen, settings.waves)
        plan_phases = entrypoints.load(entrypoints.PLAN)
        table = Table(title="Fleet plan", title_justify="left")
        for name in ("wave", "environment", "tier", "changes", "monthly delta $"):
            table.add_column(name, justify="right" if "$" in name else "left")
        total = 0.0
        for wave, members in waves:
            for env in members:
                planned = plan_phases(
                    str(env.source), [p for p in numbers if p in env.phases.enabled]
                )
                changes = [c for steps in planned.values() for _, c in steps if c and c.actions]
                delta = sum(c.monthly_cost_delta for c in changes)
                total += delta
                table.add_row(wave, env.name, env.tier, str(len(changes)), f"{delta:,.2f}")
    except PhasegateError as exc:
        raise _fail(exc) from None
    table.caption = (
        f"{len(chosen)} environments in {len(waves)} waves; max_concurrency "
        f"{settings.max_concurrency}, tolerated failures {settings.error_threshold(len(chosen))}; "
        f"total monthly delta ${total:,.2f}"
    )
    _out.print(table)


@app.command()
def run(
    select: SelectOpt = [],  # noqa: B006
    phases: PhasesOpt = "1",
    config: ConfigOpt = None,
    environments_dir: DirsOpt = [],  # noqa: B006
) -> None:
    """Run the fleet: each environment as a deployment run on the work pool, wave by wave."""
    from flows.fleet import FleetFailed

    try:
        settings = load_fleet_settings(config)
        numbers = parse_phases(phases)
        dirs = [str(d.resolve()) for d in environments_dir] or None
        waves_of(select_environments(select, environments_dir or None), settings.waves)
        fleet = entrypoints.load(FLEET_FLOW)
        try:
            with prefect_api(start=True):  # the environments' runs must outlive this command
                summary = fleet(select, numbers, settings, dirs)
        except FleetFailed as exc:
            _out.print(_summary_table(exc.summary))
            raise
    except PhasegateError as exc:
        raise _fail(exc) from None
    _out.print(_summary_table(summary))


def _summary_table(summary: FleetSummary) -> Table:
    title = f"Fleet {' and '.join(summary.selectors) or '(all)'}, phases {summary.phases}"
    table = outcome_table(title, summary.environments, summary.monthly_saving)
    if summary.stopped:
        table.caption += f"; stopped: {summary.stopped}"
    return table


@app.command()
def status() -> None:
    """The newest fleet run's summary, from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    try:
        require_api("phasegate fleet status")
        with get_client(sync_client=True) as client:
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["fleet-environments"])),
                sort=ArtifactSort.CREATED_DESC,
                limit=1,
            )
            if not found:
                raise ConfigError("no fleet has run on this Prefect server yet")
            artifact = found[0]
            run = client.read_flow_run(artifact.flow_run_id) if artifact.flow_run_id else None
    except PhasegateError as exc:
        raise _fail(exc) from None
    data = artifact.data
    outcomes = [EnvironmentOutcome.model_validate(row) for row in json.loads(str(data))]
    saving = sum(o.monthly_saving for o in outcomes)
    when = f"{artifact.created:%Y-%m-%d %H:%M:%S} UTC" if artifact.created else "?"
    state = run.state.name if run and run.state else "unknown"
    _out.print(
        outcome_table(f"Fleet run {run.name if run else '?'} ({state}, {when})", outcomes, saving)
    )
    if artifact.description:
        _out.print(artifact.description, highlight=False, markup=False)
