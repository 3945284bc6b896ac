"""Tables for the cost comparison and the realized savings; `--json` output bypasses them."""

from rich.markup import escape
from rich.table import Table

from phasegate.compare import Comparison
from phasegate.cost import COMPONENTS
from phasegate.savings import NO_BILLING_DATA, SavingsReport


def _money(value: float | None) -> str:
    return "needs input" if value is None else f"${value:,.2f}"


def comparison_table(comparison: Comparison) -> Table:
    """The seed's table: one row per component and Total, one column per alternative."""
    table = Table(
        title=f"Alternatives for {comparison.environment} ({comparison.region}, prices as of "
        f"{comparison.prices_as_of})",
        title_justify="left",
    )
    table.add_column("Component", style="bold")
    for alt in comparison.alternatives:
        table.add_column(alt.title, justify="right")
    for component in COMPONENTS:
        table.add_row(
            component, *(_money(alt.cell(component).monthly) for alt in comparison.alternatives)
        )
    extra = comparison.secondary_total
    for row in comparison.secondary_rows:
        table.add_row(row.label, *(_money(row.monthly) for _ in comparison.alternatives))
    table.add_row(
        "Total",
        *(
            _money(None if alt.total is None else alt.total + extra)
            for alt in comparison.alternatives
        ),
        style="bold green",
    )
    if comparison.closing:
        table.caption = escape("\n".join(comparison.closing))
        table.caption_justify = "left"
    return table


def comparison_details(comparison: Comparison) -> Table:
    """Each alternative's cells with their inputs (or the fields they need), and its notes."""
    table = Table(title="What each figure is made of", title_justify="left", show_lines=True)
    table.add_column("Alternative", style="bold")
    table.add_column("Component")
    table.add_column("Inputs")
    for alt in comparison.alternatives:
        for cell in alt.cells:
            what = "set " + ", ".join(cell.missing) if cell.missing else "\n".join(cell.inputs)
            table.add_row(alt.title, cell.component, escape(what))
        table.add_row(alt.title, "Operations", escape("\n".join(alt.notes)))
    return table


def savings_table(report: SavingsReport) -> Table:
    """Per phase and component: the plan's estimated monthly saving and the bill's."""
    table = Table(
        title=f"Savings of {report.environment}: estimated vs realized, a month "
        f"({report.days} days each side of each phase)",
        title_justify="left",
    )
    for column in ("Phase", "Component", "Estimated", "Realized"):
        table.add_column(column, justify="left" if column in ("Phase", "Component") else "right")
    for phase in report.phases:
        label = f"{phase.phase}"
        if phase.status != "measured":
            table.add_row(label, escape(phase.detail), "", "")
        for c in phase.components:
            table.add_row(label, c.component, f"${c.estimated:,.2f}", _money_or(c.realized))
        if phase.components:
            table.add_row(
                label,
                "Total",
                f"${phase.estimated_total:,.2f}",
                _money_or(phase.realized_total),
                style="bold",
            )
        if phase.status == "measured":
            table.add_row(label, f"[dim]{escape(phase.detail)}[/dim]", "", "")
    return table


def _money_or(value: float | None) -> str:
    return NO_BILLING_DATA if value is None else f"${value:,.2f}"


def savings_markdown(report: SavingsReport) -> str:
    """The savings section of a migration's report artifact."""
    lines = ["## Savings: estimated vs realized (a month)", ""]
    if not report.has_data:
        lines.append(f"{NO_BILLING_DATA}.")
    lines += ["| Phase | Component | Estimated | Realized |", "|---|---|---|---|"]
    for phase in report.phases:
        if phase.status != "measured":
            lines.append(f"| {phase.phase} | {phase.detail} | | |")
        lines += [
            f"| {phase.phase} | {c.component} | ${c.estimated:,.2f} | {_money_or(c.realized)} |"
            for c in phase.components
        ]
    return "\n".join(lines) + "\n"
