"""The `phasegate` command line: thin verbs over the library, with the exit codes of DESIGN.md.

0 success, 1 a failed migration or gate, 2 bad input. Every PhasegateError becomes one line
on stderr and its exit code; anything else is a bug and keeps its traceback.
"""

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from prefect import tags
from prefect.settings import PREFECT_API_URL
from rich.console import Console
from rich.markup import escape

from phasegate import deploy as deployments
from phasegate import entrypoints, fleet_cli, server_cli
from phasegate.approvals import check_auto_approve_allowed
from phasegate.checkpoints import checkpoint_storage
from phasegate.compare import compare_alternatives, with_secondary_rows
from phasegate.config import EnvironmentConfig, load_environment
from phasegate.cost import load_price_table, price_inventory
from phasegate.cost_tables import comparison_details, comparison_table, savings_table
from phasegate.errors import ConfigError, PhasegateError
from phasegate.failover import FAILOVER_PHASE, FAILOVER_STEP, plan_failover
from phasegate.gates import GateFailed, GateRound, HealthGate, gate_table
from phasegate.inventory import discover
from phasegate.ledger import Ledger
from phasegate.logs import configure
from phasegate.prefect_api import prefect_api
from phasegate.preflight import check_aws, reachable_environment
from phasegate.prices_refresh import refresh_price_table
from phasegate.region_cost import secondary_rows, with_secondary
from phasegate.render import (
    cost_table,
    history_table,
    inventory_table,
    migration_table,
    plan_table,
)
from phasegate.report import MigrationFailed, MigrationReport
from phasegate.sandbox import cli as sandbox_cli
from phasegate.sandbox.server import start_sandbox, stop_sandbox
from phasegate.savings import SavingsReport, savings_report
from phasegate.secondary_region import (
    discover_secondary,
    secondary_config,
    tagged_health_checks,
)
from phasegate.status import environment_tag, status_table
from phasegate.steps import PlanBlocked

app = typer.Typer(
    help="Gated, resumable AWS cost-migration flows on Prefect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(sandbox_cli.app, name="sandbox")
app.add_typer(fleet_cli.app, name="fleet")
app.add_typer(server_cli.app, name="server")
prices_app = typer.Typer(help="Dated price tables, each price citing its page.")
app.add_typer(prices_app, name="prices")
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])
EnvArg = Annotated[
    str, typer.Argument(help="Environment name under config/environments/, or a path")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


def reports_errors(func: F) -> F:
    """Turn a PhasegateError into its message on stderr and its exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PhasegateError as exc:
            message = escape(str(exc))  # a "[...]" in it is text, not rich markup
            err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


# Commands that run flows or read runs: without PREFECT_API_URL they start the local Prefect
# server (phasegate/local_server.py) if it is not running; the others use it only if it runs
# (`deploy` is refused without one, `fleet run` starts it after checking its input).
_NEEDS_PREFECT = frozenset({"run", "rollback", "failover", "status", "approve", "unlock", "demo"})


@app.callback()
@reports_errors
def _setup(ctx: typer.Context) -> None:
    configure()
    start = ctx.invoked_subcommand in _NEEDS_PREFECT and "--help" not in ctx.args
    ctx.with_resource(prefect_api(start))


@app.command()
@reports_errors
def inventory(env: EnvArg, as_json: JsonOpt = False) -> None:
    """What discovery finds for ENV, by its tags (and in its second region, if it has one)."""
    config = reachable_environment(env)
    inv, secondary = discover(config), discover_secondary(config)
    if as_json:
        console.print_json(
            data={
                **inv.model_dump(mode="json"),
                "secondary": secondary.model_dump(mode="json") if secondary else None,
            }
        )
        return
    console.print(inventory_table(inv))
    if secondary is not None:
        console.print(inventory_table(secondary, title="Second region of"))


@app.command()
@reports_errors
def cost(env: EnvArg, as_json: JsonOpt = False) -> None:
    """Monthly cost of ENV now, by component, from the dated price tables (the second
    region's rows priced with its own)."""
    config = reachable_environment(env)
    report = price_inventory(discover(config), config, load_price_table(config.aws.region))
    report = with_secondary(
        report, config, discover_secondary(config), tagged_health_checks(config)
    )
    if as_json:
        console.print_json(report.model_dump_json())
    else:
        console.print(cost_table(report))


@app.command()
@reports_errors
def compare(env: EnvArg, as_json: JsonOpt = False) -> None:
    """ENV priced as each of the seed's alternatives, from its inventory and usage config."""
    config = reachable_environment(env)
    prices = load_price_table(config.aws.region)
    result = compare_alternatives(discover(config), config, prices)
    secondary = discover_secondary(config)
    if secondary is not None:
        rows = secondary_rows(config, secondary, tagged_health_checks(config))
        result = with_secondary_rows(result, *rows)
    if as_json:
        console.print_json(result.model_dump_json())
    else:
        console.print(comparison_table(result))
        console.print(comparison_details(result))


def _savings(config: EnvironmentConfig, days: int = 7) -> SavingsReport:
    steps = entrypoints.load(entrypoints.STEPS)
    by_phase: dict[int, list[str]] = {}
    for step_id, cls in steps.items():
        by_phase.setdefault(cls.phase, []).append(step_id)
    hours = load_price_table(config.aws.region).hours_per_month
    return savings_report(config, by_phase, hours, days)


@app.command()
@reports_errors
def savings(
    env: EnvArg,
    days: Annotated[int, typer.Option(min=1, max=90, help="Days compared on each side")] = 7,
    as_json: JsonOpt = False,
) -> None:
    """Each phase's estimated saving against the bill (Cost Explorer) before and after it."""
    report = _savings(reachable_environment(env), days)
    if as_json:
        console.print_json(report.model_dump_json())
    else:
        console.print(savings_table(report))


@prices_app.command("refresh")
@reports_errors
def prices_refresh(
    region: Annotated[str, typer.Option("--region", help="The table's region, e.g. us-east-1")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for the new table (default: beside it)")
    ] = None,
) -> None:
    """Rebuild REGION's table from the AWS Price List API into a new dated file, with a diff."""
    result = refresh_price_table(region, out)
    for line in result.diff:
        console.print(line, highlight=False, markup=False)
    console.print(f"wrote {result.path} and {result.diff_path}", highlight=False, markup=False)


@app.command()
@reports_errors
def gate(env: EnvArg, as_json: JsonOpt = False) -> None:
    """Run ENV's health gate now (count rounds, interval apart); exit 1 if it fails."""
    config = reachable_environment(env)
    count = config.gates.count

    def progress(r: GateRound) -> None:
        err_console.print(
            f"round {r.number}/{count}: {len(r.checks) - r.failures - r.inconclusives} pass, "
            f"{r.failures} fail, {r.inconclusives} inconclusive",
            highlight=False,
        )

    result = HealthGate(config, on_round=progress).evaluate()
    if as_json:
        console.print_json(result.model_dump_json())
    else:
        console.print(gate_table(result))
        if result.passed:  # a failure's reason is the error line below
            console.print(f"passed: {result.reason}", highlight=False, soft_wrap=True)
    if not result.passed:
        raise GateFailed.from_result(result)


PhaseOpt = Annotated[int | None, typer.Option("--phase", min=1, max=3, help="Phase 1, 2 or 3")]


def _phases(phase: int | None) -> list[int]:
    return [phase] if phase else [1, 2, 3]


@app.command()
@reports_errors
def plan(env: EnvArg, phase: PhaseOpt = None, as_json: JsonOpt = False) -> None:
    """What each step would change, its monthly cost delta and reversibility; changes nothing."""
    config = reachable_environment(env)
    result = entrypoints.load(entrypoints.PLAN)(env, _phases(phase))
    blocked = [c for plans in result.values() for _, c in plans if c is not None and c.blockers]
    if as_json:
        console.print_json(
            data={
                str(n): {sid: c.model_dump(mode="json") if c else None for sid, c in plans}
                for n, plans in result.items()
            }
        )
    else:
        for n, plans in result.items():
            if plans:
                console.print(plan_table(config.name, n, plans))
            else:
                console.print(f"Phase {n}: skipped, no steps built yet.")
    if blocked:  # shown above in full; exit 1 so a script never proceeds past a blocker
        raise PlanBlocked.of(config.name, blocked[0])


def _migrate(
    env: str, phases: list[int] | None, auto_approve: bool, wait: bool = True
) -> MigrationReport:
    """Run the migration flow and print its before/after table, also when a phase fails."""
    config = load_environment(env)
    check_auto_approve_allowed(config, auto_approve)  # bad input (exit 2) before the network
    check_aws(config)  # before any flow starts
    with checkpoint_storage(config), tags(environment_tag(config.name)):
        try:
            report = entrypoints.load(entrypoints.MIGRATION_FLOW)(env, phases, auto_approve, wait)
        except MigrationFailed as exc:
            console.print(migration_table(exc.report))
            raise
    console.print(migration_table(report))
    return report


@app.command()
@reports_errors
def run(
    env: EnvArg,
    phase: PhaseOpt = None,
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="Approve every phase (dev only; never prod)")
    ] = False,
    no_wait: Annotated[
        bool,
        typer.Option(
            "--no-wait",
            help="Refuse a phase outside its maintenance window (exit 1) instead of waiting",
        ),
    ] = False,
) -> None:
    """Run the migration (or one phase) on ENV: plan, approval, phase, health gate.

    A phase outside its schedule window waits for the window to open, unless --no-wait.
    """
    _migrate(env, [phase] if phase else None, auto_approve, wait=not no_wait)


@app.command()
@reports_errors
def rollback(
    env: EnvArg,
    phase: Annotated[int, typer.Option("--phase", min=1, max=3, help="The phase to undo")],
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="Approve the rollback (dev only; never prod)")
    ] = False,
) -> None:
    """Undo a phase back to before phasegate first touched it, from each step's ledger.

    Shows what it will undo and restore, then asks as `run` does (tier policy).
    """
    config = reachable_environment(env)
    check_auto_approve_allowed(config, auto_approve)
    preview = entrypoints.load(entrypoints.ROLLBACK_PREVIEW)(env, phase)
    console.print(plan_table(config.name, phase, preview, title="Rollback of"))
    with checkpoint_storage(config), tags(environment_tag(config.name)):
        outcome = entrypoints.load(entrypoints.ROLLBACK_FLOW)(env, phase, True, auto_approve)
    for step_id, what in outcome.items():
        console.print(f"{step_id}: {what}")


@app.command()
@reports_errors
def failover(
    env: EnvArg,
    to: Annotated[str, typer.Option("--to", help="The second region (regions.secondary)")],
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="Approve the promotion (dev only; never prod)")
    ] = False,
) -> None:
    """Promote the read replica in the second region to a standalone database: irreversible.

    Never part of a phase. Shows what it will do, asks as `rollback` does (and also in dev
    unless --auto-approve), promotes, waits until the database is available, records it.
    """
    config = load_environment(env)
    check_auto_approve_allowed(config, auto_approve)
    check_aws(secondary_config(config) or config)  # the primary's region may be down
    plan = plan_failover(config, to)  # bad input: one line, exit 2, nothing changed
    for line in plan.lines() if plan.state != "promoted" else []:
        console.print(escape(line), highlight=False, soft_wrap=True)
    with checkpoint_storage(config), tags(environment_tag(config.name)):
        outcome = entrypoints.load(entrypoints.FAILOVER_FLOW)(env, to, auto_approve)
    console.print(escape(outcome), highlight=False, soft_wrap=True)


@app.command()
@reports_errors
def history(
    env: EnvArg,
    step: Annotated[str | None, typer.Option("--step", help="One step id, e.g. nat.remove")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Each step's ledger chain, oldest first: applies, intents, drift, rollbacks."""
    config = load_environment(env)
    phases = {sid: cls.phase for sid, cls in entrypoints.load(entrypoints.STEPS).items()}
    phases[FAILOVER_STEP] = FAILOVER_PHASE  # `failover` keeps a chain too, beside the steps'
    if step is not None and step not in phases:
        raise ConfigError(f"--step: unknown step {step!r}; known: {', '.join(sorted(phases))}")
    ledger = Ledger(config)
    chains = {sid: ledger.chain(n, sid) for sid, n in phases.items() if step in (None, sid)}
    if as_json:
        console.print_json(
            data={sid: [r.model_dump(mode="json") for r in chain] for sid, chain in chains.items()}
        )
        return
    console.print(history_table(config.name, chains))


@app.command()
@reports_errors
def approve(
    run_id: Annotated[str, typer.Argument(help="The paused flow run's id (Prefect UI, logs)")],
    approver: Annotated[str, typer.Option(help="Who answers; kept in the run's Records")],
    reject: Annotated[bool, typer.Option("--reject", help="Reject instead of approve")] = False,
    comment: Annotated[str, typer.Option(help="Why; kept in the run's Records")] = "",
) -> None:
    """Answer the approval a flow run waits for, through the Prefect API (PREFECT_API_URL)."""
    name = entrypoints.load(entrypoints.APPROVE)(run_id, not reject, approver, comment)
    verdict = "rejected" if reject else "approved"
    console.print(f"{verdict} {name} ({run_id}) as {approver}", highlight=False, markup=False)


@app.command()
@reports_errors
def unlock(env: EnvArg) -> None:
    """Break ENV's run lock when its holder is known dead (a killed run frees it in 60 s)."""
    config = load_environment(env)
    holder = entrypoints.load(entrypoints.FORCE_UNLOCK)(config.name)
    console.print(f"{config.name}: lock broken (it was held by {holder or 'nobody known'})")


PoolOpt = Annotated[str, typer.Option("--pool", help="The process work pool (created if missing)")]


@app.command()
@reports_errors
def deploy(env: EnvArg, pool: PoolOpt = deployments.DEFAULT_POOL) -> None:
    """Create or update ENV's deployments, one per enabled phase, on a process work pool."""
    if not PREFECT_API_URL.value():
        raise ConfigError(
            "phasegate deploy needs a Prefect server to keep the deployments: start one "
            "(prefect server start) and set PREFECT_API_URL, e.g. http://127.0.0.1:4200/api"
        )
    for item in deployments.deploy(env, pool):
        console.print(item.describe(), highlight=False, soft_wrap=True)
    console.print(f"Start a worker: prefect worker start --pool {pool}", highlight=False)


@app.command()
@reports_errors
def serve(env: EnvArg) -> None:
    """Serve ENV's deployments from this process (no work pool, no worker) until Ctrl-C."""
    deployments.serve(env)


@app.command()
@reports_errors
def status(env: EnvArg, as_json: JsonOpt = False) -> None:
    """Recent runs, the current phase and step, pending approvals, the last gate result."""
    reachable_environment(env)
    report = entrypoints.load(entrypoints.STATUS)(env)
    if as_json:
        console.print_json(report.model_dump_json())
    else:
        console.print(status_table(report))


@app.command()
@reports_errors
def demo(
    port: Annotated[int, typer.Option(help="Port for the sandbox's AWS endpoint")] = 4566,
    stop: Annotated[
        bool, typer.Option("--stop/--keep", help="Stop the sandbox afterwards")
    ] = False,
) -> None:
    """Sandbox up, seed the demo environment, show it, migrate it, show before and after."""
    stop_sandbox()
    state = start_sandbox(port=port, environments=1)
    console.print(f"Sandbox up on http://127.0.0.1:{state.port} (pid {state.pid})")
    console.print(f"Prefect API: {PREFECT_API_URL.value()} (the runs stay in its UI)")
    try:
        config = load_environment("demo")
        inv = discover(config)
        prices = load_price_table(config.aws.region)
        console.print(inventory_table(inv))
        console.print(cost_table(price_inventory(inv, config, prices)))
        _migrate("demo", None, auto_approve=False)
        # Beside the before/after table: the seed's alternatives for the "before" inventory.
        console.print(comparison_table(compare_alternatives(inv, config, prices)))
        console.print(savings_table(_savings(config)))
    finally:
        if stop:
            stop_sandbox()
            console.print("Sandbox stopped.")
        else:
            console.print("The sandbox keeps running; stop it with `phasegate sandbox down`.")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
