"""`phasegate server up|down|status`: the one local Prefect server every command reuses."""

import typer
from rich.console import Console

from phasegate.errors import PhasegateError
from phasegate.local_server import server_status, start_server, stop_server

app = typer.Typer(
    help="The local Prefect server (SQLite under PHASEGATE_HOME) that commands and the UI share.",
    no_args_is_help=True,
)
_out = Console()
_err = Console(stderr=True, soft_wrap=True)


@app.command()
def up(
    port: int | None = typer.Option(
        None, "--port", "-p", min=1, max=65535, help="default 4200, or any free port if taken"
    ),
) -> None:
    """Start the local Prefect server, or show the one already running."""
    try:
        with _out.status("starting the local Prefect server ..."):
            state = start_server(port)
    except PhasegateError as exc:
        _err.print(f"error: {exc}", style="red", markup=False, highlight=False)
        raise typer.Exit(exc.exit_code) from None
    _out.print(f"Prefect server at {state.ui_url} (pid {state.pid}); commands use {state.api_url}")


@app.command()
def down() -> None:
    """Stop the local Prefect server (its database stays; `up` brings the runs back)."""
    state = stop_server()
    _out.print(f"stopped the Prefect server (pid {state.pid})" if state else "no server is running")


@app.command()
def status() -> None:
    """Whether the local Prefect server runs, where, and since when."""
    current = server_status()
    state = current.state
    if state is None or not current.alive:
        _out.print("no local Prefect server is running (`phasegate server up` starts one)")
        return
    health = "running" if current.answering else "not answering"
    _out.print(
        f"{health} at {state.ui_url} (pid {state.pid}, since {state.started_at:%Y-%m-%d %H:%M:%S}"
        f" UTC); log: {state.log_file}",
        highlight=False,
    )
