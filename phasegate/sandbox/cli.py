"""`phasegate sandbox up|down|seed|status|fault`: the embedded AWS stand-in from the command line.

The main CLI mounts this with `app.add_typer(sandbox.cli.app, name="sandbox")`. Every
PhasegateError becomes one line on stderr and its exit code (1, or 2 for bad input), as
everywhere in phasegate.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from prefect.settings import PREFECT_API_URL
from rich.console import Console
from rich.table import Table

from phasegate import entrypoints
from phasegate.config import load_environment
from phasegate.errors import ConfigError, PhasegateError
from phasegate.home import display_path
from phasegate.local_server import start_server
from phasegate.sandbox.server import (
    add_environments,
    environment_file,
    sandbox_status,
    start_sandbox,
    stop_sandbox,
)
from phasegate.sandbox.simulator import FAULT_KINDS, read_fault_specs, set_fault
from phasegate.sandbox.tiers import parse_tiers

app = typer.Typer(
    help="The embedded AWS sandbox: moto on 127.0.0.1, seeded environments, simulated metrics.",
    no_args_is_help=True,
)

_out = Console()
_err = Console(stderr=True, soft_wrap=True)


@contextmanager
def _errors() -> Iterator[None]:
    """Turn a PhasegateError into its message on stderr and its exit code."""
    try:
        yield
    except PhasegateError as exc:
        _err.print(f"error: {exc}", style="red", markup=False, highlight=False)
        raise typer.Exit(exc.exit_code) from None


def _environments_table(names: list[str]) -> Table:
    table = Table("environment", "config file", box=None, pad_edge=False)
    for name in names:
        table.add_row(name, display_path(environment_file(name)))
    return table


@app.command()
def up(
    port: int = typer.Option(4566, "--port", "-p", min=1, max=65535, help="port on 127.0.0.1"),
    environments: int | None = typer.Option(
        None, "--environments", "-n", min=1, help="environments to seed: demo, demo-2, ..."
    ),
    tiers: str | None = typer.Option(
        None,
        "--tiers",
        help="a fleet by tier instead, e.g. dev:30,staging:15,prod:5 (dev-1.., staging-1.., "
        "prod-1..); --environments, if given, must be their sum",
    ),
    latency: float = typer.Option(
        0.0,
        "--latency",
        min=0.0,
        help="changes take AWS's time times this (1: as on AWS, 0.01: a hundredth; "
        "default 0: instant); see docs/sandbox-latency.md",
    ),
    via: str = typer.Option(
        "api",
        "--via",
        help="how environments are made: api (boto3 calls) or terraform (terraform apply of "
        "terraform/ with the real AWS provider; about 2 minutes each)",
    ),
    with_strays: bool = typer.Option(
        False,
        "--with-strays",
        help="also an unmanaged EC2 instance and a Lambda interface in each environment's "
        "private subnets: what nat.remove must not cut off (the demo of blockers)",
    ),
) -> None:
    """Start the sandbox in the background and seed environments into it."""
    with _errors(), _out.status(f"starting the sandbox on port {port} ..."):
        by_name = parse_tiers(tiers) if tiers is not None else None
        if by_name and environments is not None and environments != len(by_name):
            raise ConfigError(
                f"--environments {environments} and --tiers {tiers} ({len(by_name)}) disagree"
            )
        state = start_sandbox(
            port=port,
            environments=environments or 1,
            latency=latency,
            via=via,
            tiers=by_name,
            strays=with_strays,
        )
        prefect = None if PREFECT_API_URL.value() else start_server()
    _out.print(
        f"[green]sandbox running[/] at {state.endpoint} (pid {state.pid}); "
        f"log: {display_path(Path(state.log_file))}"
    )
    _out.print(_environments_table(state.environments))
    if prefect is not None:  # the one local Prefect server every command then uses
        _out.print(f"Prefect server at {prefect.ui_url} (pid {prefect.pid}): runs show in its UI")
    _out.print(f"try: phasegate inventory {state.environments[0]}")


@app.command()
def down() -> None:
    """Stop the sandbox and remove the environment files it wrote."""
    with _errors():
        result = stop_sandbox()
    if result.state is None:
        _out.print("no sandbox is running")
    elif not result.was_running:
        _out.print(
            f"the sandbox (pid {result.state.pid}, port {result.state.port}) was not running; "
            "removed its stale files"
        )
    else:
        _out.print(
            f"[green]sandbox stopped[/] (pid {result.state.pid}, port {result.state.port}); "
            f"removed {len(result.state.environments)} environment file(s)"
        )


@app.command()
def seed(
    environments: int = typer.Option(
        1, "--environments", "-n", min=1, help="how many more environments to seed"
    ),
) -> None:
    """Seed more environments into the running sandbox."""
    with _errors(), _out.status("seeding ..."):
        state, names = add_environments(environments)
    _out.print(f"[green]seeded[/] {len(names)} environment(s) into {state.endpoint}")
    _out.print(_environments_table(names))


@app.command()
def status() -> None:
    """Show whether the sandbox runs, where, and which environments it holds."""
    with _errors():
        current = sandbox_status()
    state = current.state
    if state is None:
        _out.print("no sandbox is running")
        return
    if not current.alive:
        _out.print(
            f"[yellow]not running[/]: stale state from pid {state.pid} (port {state.port}); "
            "`phasegate sandbox down` cleans it up"
        )
        return
    health = "[green]running[/]" if current.answering else "[red]not answering[/]"
    _out.print(
        f"{health} at {state.endpoint} (pid {state.pid}, "
        f"since {state.started_at:%Y-%m-%d %H:%M:%S} UTC)"
    )
    _out.print(_environments_table(state.environments))


_FAULT_EFFECTS = {
    "5xx": "about 20% of requests answer 5xx",
    "latency": "target response time 2.5 s",
    "nodata": "no more metrics published",
    "unhealthy": "no healthy host behind the load balancer",
    "elb503": "the load balancer answers 503 itself: no target is healthy",
}


@app.command()
def fault(
    env: str = typer.Argument(..., help="a sandbox environment: its name or its config file"),
    kind: str | None = typer.Option(
        None, "--kind", "-k", help=f"what goes wrong: {' | '.join(FAULT_KINDS)}"
    ),
    after: str | None = typer.Option(
        None, "--after", help="a step id: stay healthy until that step has finished"
    ),
    clear: bool = typer.Option(False, "--clear", help="remove the environment's fault"),
) -> None:
    """Make a sandbox environment misbehave (or stop it), as the workload simulator shows it.

    With --after STEP the environment stays healthy until STEP's checkpoint exists (the step
    has finished), then the fault comes into force. A health gate sees it within a tick or two.
    """
    with _errors():
        config = load_environment(env)
        if not config.aws.endpoint_url:
            raise ConfigError(
                f"{env}: {config.name} is not a sandbox environment (it has no aws.endpoint_url); "
                "faults are injected into sandbox environments only"
            )
        if clear:
            if kind is not None or after is not None:
                raise ConfigError("--clear removes the whole fault; it takes no --kind or --after")
            had = read_fault_specs().get(config.name)
            set_fault(config.name, None)
            _out.print(
                f"cleared the {had.kind} fault of {config.name}"
                if had
                else f"{config.name} had no fault"
            )
            return
        if kind is None:
            raise ConfigError(f"give --kind ({' | '.join(FAULT_KINDS)}) or --clear")
        if kind not in FAULT_KINDS:
            raise ConfigError(
                f"unknown fault kind {kind!r}; expected one of {', '.join(FAULT_KINDS)}"
            )
        if after is not None:
            steps = entrypoints.load("tasks.registry:STEPS")
            if after not in steps:
                raise ConfigError(
                    f"unknown step {after!r} for --after; known steps: {', '.join(steps)}"
                )
        set_fault(config.name, kind, after=after)
    when = f"from when {after} has finished (its checkpoint exists)" if after else "from now on"
    _out.print(f"[green]fault set[/]: {config.name}: {kind} ({_FAULT_EFFECTS[kind]}), {when}")
    if not sandbox_status().running:
        _out.print(
            "note: no sandbox is running here; the workload simulator of `phasegate sandbox up` "
            "applies faults"
        )
