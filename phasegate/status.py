"""What `phasegate status` reports about an environment, and how it is shown.

Runs are found by the tag every phasegate run of an environment carries
(`environment_tag`); the Prefect API is read in tasks.status.
"""

from datetime import UTC, datetime

from pydantic import BaseModel, Field, computed_field
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text


def environment_tag(environment: str) -> str:
    """The Prefect tag on every flow run phasegate starts for `environment`."""
    return f"phasegate-env:{environment}"


def approve_command(run_id: str) -> str:
    """The command that answers the approval flow run `run_id` waits for."""
    return f"phasegate approve {run_id} --approver NAME"


class RunSummary(BaseModel):
    id: str
    name: str
    flow: str
    state: str
    started: datetime | None = None


class PendingApproval(RunSummary):
    """A Paused run of the environment: it waits for an operator."""

    paused_since: datetime | None = None
    timeout_at: datetime | None = None
    asks_for_input: bool = Field(
        default=True,
        description="paused for an approval form; False: a plain pause, resumed from the UI",
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def command(self) -> str | None:
        """How to answer from a terminal; None when only the Prefect UI can resume it."""
        return approve_command(self.id) if self.asks_for_input else None


class GateSummary(BaseModel):
    """The environment's last health gate, as its published artifact says."""

    verdict: str  # pass | fail | unknown
    reason: str = ""
    rounds: str = ""  # e.g. "3 of 3 round(s) ran; 0 failed and 0 inconclusive measurement(s)."
    at: datetime | None = None
    flow_run_id: str | None = None
    summary: str


class DriftSummary(BaseModel):
    """A step whose newest verdict is drift: AWS no longer shows what its Record left."""

    step: str
    at: datetime
    detail: str
    diff: dict[str, dict[str, object]] = Field(default_factory=dict)


class StatusReport(BaseModel):
    environment: str
    recent_runs: list[RunSummary] = Field(default_factory=list)
    current_run: RunSummary | None = None
    current_phase: int | None = None
    current_phase_name: str | None = None
    current_step: str | None = None
    pending_approvals: list[PendingApproval] = Field(default_factory=list)
    last_gate: str | None = None
    gate: GateSummary | None = None
    drift: list[DriftSummary] = Field(default_factory=list)


_STATE_STYLE = {
    "Completed": "green",
    "Cached": "green",
    "Running": "cyan",
    "Retrying": "cyan",
    "Paused": "bold yellow",
    "Suspended": "bold yellow",
    "Pending": "blue",
    "Scheduled": "blue",
    "Late": "yellow",
    "AwaitingRetry": "yellow",
    "Failed": "bold red",
    "Crashed": "bold red",
    "TimedOut": "bold red",
    "Cancelled": "magenta",
    "Cancelling": "magenta",
}
_VERDICT_STYLE = {"pass": "bold green", "fail": "bold red"}


def _when(at: datetime | None, utc: bool = True) -> str:
    if at is None:
        return "-"
    if at.tzinfo is not None:
        at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if utc else "")


def _state(state: str) -> Text:
    return Text(state, style=_STATE_STYLE.get(state, ""))


def _current(report: StatusReport) -> RenderableType:
    label = ("Current: ", "bold")
    run = report.current_run
    if run is None:
        return Text.assemble(label, ("no run in progress", "dim"))
    if report.current_step is not None and report.current_phase is not None:
        name = f" ({report.current_phase_name})" if report.current_phase_name else ""
        where = Text.assemble(
            f"phase {report.current_phase}{name}, step ", (report.current_step, "bold")
        )
    else:
        where = Text("no step started yet", style="dim")
    return Group(
        Text.assemble(label, where),
        Text.assemble("  in ", run.name, " (", _state(run.state), ")"),
        Text(f"  run {run.id}", style="dim"),
    )


def _approvals(report: StatusReport) -> RenderableType:
    label = ("Pending approvals: ", "bold")
    if not report.pending_approvals:
        return Text.assemble(label, ("none", "dim"))
    lines: list[RenderableType] = [
        Text.assemble(label, (str(len(report.pending_approvals)), "bold yellow"))
    ]
    for run in report.pending_approvals:
        since = f", paused since {_when(run.paused_since)}" if run.paused_since else ""
        until = f" (times out {_when(run.timeout_at)})" if run.timeout_at else ""
        lines.append(Text.assemble("  - ", (run.name, "bold"), since, until))
        if run.command:  # a line of its own, so a terminal 80 wide never breaks it
            lines.append(Text(f"    {run.command}"))
        else:
            lines.append(Text(f"    run {run.id}"))
            lines.append(Text("    no approval form: resume it from the Prefect UI", style="dim"))
    return Group(*lines)


def _gate(report: StatusReport) -> RenderableType:
    label = ("Last health gate: ", "bold")
    gate = report.gate
    if gate is None:
        if report.last_gate:
            return Text.assemble(label, report.last_gate)
        return Text.assemble(label, ("none published yet", "dim"))
    text = Text.assemble(
        (gate.verdict.upper(), _VERDICT_STYLE.get(gate.verdict, "yellow")),
        f" at {_when(gate.at)}" if gate.at else "",
        f": {gate.reason}" if gate.reason else "",
    )
    line = Text.assemble(label, text)
    rows: list[RenderableType] = [line]
    if gate.rounds:
        rows.append(Text(f"  {gate.rounds}", style="dim"))
    return Group(*rows)


def _drift(report: StatusReport) -> RenderableType:
    label = ("Drift: ", "bold")
    if not report.drift:
        return Text.assemble(label, ("none seen", "dim"))
    lines: list[RenderableType] = [Text.assemble(label, (str(len(report.drift)), "bold red"))]
    for drift in report.drift:
        lines.append(Text.assemble("  - ", (drift.step, "bold"), f" at {_when(drift.at)}"))
        for field, seen in drift.diff.items():
            lines.append(
                Text(f"    {field}: recorded {seen['recorded']!r}, found {seen['found']!r}")
            )
    lines.append(
        Text(
            "    the next run plans again from the present; rollback still restores the "
            "original (phasegate history shows the chain)",
            style="dim",
        )
    )
    return Group(*lines)


def _runs(report: StatusReport) -> RenderableType:
    if not report.recent_runs:
        return Text(
            f"No flow runs tagged {environment_tag(report.environment)} in this Prefect API.",
            style="dim",
        )
    table = Table(
        title=f"Recent runs (newest first, {len(report.recent_runs)} shown; times in UTC)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("Started")
    table.add_column("State", no_wrap=True)
    table.add_column("Run / id", min_width=36, overflow="fold")
    table.add_column("Flow", overflow="fold")
    for run in report.recent_runs:
        name = Text.assemble(run.name, "\n", (run.id, "dim"))
        started = _when(run.started, utc=False).replace(" ", "\n")  # rows are 2 lines anyway
        table.add_row(started, _state(run.state), name, run.flow)
    return table


def status_table(report: StatusReport) -> Group:
    """The status of an environment for the terminal: where it is, what waits, the runs."""
    return Group(
        Text(f"Status of {report.environment}", style="bold underline"),
        _current(report),
        _approvals(report),
        _gate(report),
        _drift(report),
        Text(""),
        _runs(report),
    )
