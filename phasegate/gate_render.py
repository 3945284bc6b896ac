"""The health gate's verdict for people: Markdown (the run's artifact) and a rich table (CLI)."""

from rich.table import Table

from phasegate.gate_results import GateResult, fmt_value


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(result: GateResult) -> str:
    """The gate as Markdown: verdict and reason, then a table per round."""
    lines = [
        f"# Health gate of `{result.environment}`: **{result.verdict.upper()}**",
        "",
        _cell(result.reason),
        "",
        f"{len(result.rounds)} of {result.count} round(s) ran; "
        f"{result.failures} failed and {result.inconclusives} inconclusive measurement(s). "
        "No data is inconclusive, never a pass.",
    ]
    for r in result.rounds:
        lines += [
            "",
            f"## Round {r.number} ({r.at.strftime('%Y-%m-%d %H:%M:%S')} UTC)",
            "",
            "| check | resource | status | value | threshold | detail |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {c.name} | {_cell(c.resource)} | {c.status} | {_cell(fmt_value(c.value))} "
            f"| {_cell(c.threshold)} | {_cell(c.detail)} |"
            for c in r.checks
        ]
    return "\n".join(lines) + "\n"


_STATUS_STYLE = {"pass": "green", "fail": "bold red", "inconclusive": "yellow"}


def gate_table(result: GateResult) -> Table:
    """The gate as a rich table for the CLI: a row per check per round."""
    verdict = "[green]PASS[/green]" if result.passed else "[bold red]FAIL[/bold red]"
    table = Table(title=f"Health gate of {result.environment}: {verdict}", title_justify="left")
    for column in ("Round", "Check", "Resource", "Status", "Value", "Threshold", "Detail"):
        table.add_column(column, justify="right" if column in ("Round", "Value") else "left")
    for r in result.rounds:
        for c in r.checks:
            style = _STATUS_STYLE[c.status]
            table.add_row(
                str(r.number),
                c.name,
                c.resource,
                f"[{style}]{c.status}[/{style}]",
                fmt_value(c.value),
                c.threshold,
                c.detail,
            )
    return table
