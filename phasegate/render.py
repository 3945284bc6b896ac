"""Rich tables for what the CLI shows a person; `--json` output bypasses this module."""

from rich.markup import escape
from rich.table import Table

from phasegate.cost import CostReport
from phasegate.inventory import Inventory
from phasegate.report import MigrationReport
from phasegate.steps import Change, Record


def inventory_table(inv: Inventory, title: str = "Inventory of") -> Table:
    """One row per resource, grouped by kind, with the fields the migration cares about."""
    table = Table(title=f"{title} {inv.environment} ({inv.region})", title_justify="left")
    table.add_column("Kind", style="bold")
    table.add_column("Id")
    table.add_column("Details")
    for vpc in inv.vpcs:
        table.add_row("VPC", vpc.id, f"{vpc.cidr}, IGW {', '.join(vpc.internet_gateways) or '-'}")
        for s in vpc.subnets:
            kind = "public" if s.public else "private"
            table.add_row("  Subnet", s.id, f"{kind} {s.cidr} {s.availability_zone}")
        for n in vpc.nat_gateways:
            eips = ", ".join(
                f"{a} ({ip})" for a, ip in zip(n.allocation_ids, n.public_ips, strict=False)
            )
            table.add_row("  NAT gateway", n.id, f"{n.state}, EIP {eips}")
        for endpoint in vpc.vpc_endpoints:
            table.add_row("  VPC endpoint", endpoint, "")
    for svc in inv.services:
        placement = "public IPs" if svc.assign_public_ip else "private"
        table.add_row(
            "ECS service",
            f"{svc.cluster}/{svc.name}",
            f"{svc.architecture} {svc.cpu} CPU / {svc.memory} MB, "
            f"{svc.running}/{svc.desired} running, {placement}",
        )
    for lb in inv.load_balancers:
        groups = ", ".join(tg.name for tg in lb.target_groups)
        table.add_row("Load balancer", lb.name, f"{lb.scheme}, target groups: {groups}")
    for db in inv.databases:
        table.add_row(
            "RDS",
            db.identifier,
            f"{db.instance_class} {db.engine} {db.engine_version}, "
            f"{'Multi-AZ' if db.multi_az else 'single-AZ'}, {db.allocated_storage_gb} GB "
            f"{db.storage_type}, {db.status}",
        )
    for cache in inv.caches:
        table.add_row("Redis", cache.id, f"{cache.node_count} x {cache.node_type}, {cache.status}")
    for asg in inv.autoscaling_groups:
        table.add_row(
            "Auto Scaling group",
            asg.name,
            f"{', '.join(asg.instance_types) or '?'} {asg.in_service}/{asg.desired} InService "
            f"(min {asg.min_size}, max {asg.max_size})",
        )
    return table


def cost_table(report: CostReport) -> Table:
    """The seed's cost table for one environment: a row per component, line items beneath."""
    table = Table(
        title=f"Monthly cost of {report.environment} ({report.region}, prices as of "
        f"{report.prices_as_of})",
        title_justify="left",
    )
    table.add_column("Component", style="bold")
    table.add_column("Item")
    table.add_column("Monthly", justify="right")
    for row in report.rows:
        table.add_row(row.label, "", f"${row.monthly:,.2f}", style="bold")
        for line in row.lines:
            table.add_row("", line.description, f"${line.monthly:,.2f}")
    table.add_row("Total", "", f"${report.total:,.2f}", style="bold green")
    if report.notes:
        table.caption = "\n".join(report.notes)
        table.caption_justify = "left"
    return table


def plan_table(
    environment: str,
    phase: int,
    plans: list[tuple[str, Change | None]],
    title: str = "Plan for",
) -> Table:
    """Each step's change, its monthly cost delta and its reversibility."""
    table = Table(title=f"{title} {environment}, phase {phase}", title_justify="left")
    table.add_column("Step", style="bold")
    table.add_column("Change")
    table.add_column("Monthly delta", justify="right")
    table.add_column("Reversibility")
    total = 0.0
    for step_id, change in plans:
        if change is None:
            table.add_row(step_id, "[dim]nothing to do[/dim]", "$0.00", "")
            continue
        total += change.monthly_cost_delta
        r = change.reversibility
        table.add_row(
            step_id,
            "\n".join(
                [
                    change.summary,
                    *(f"  - {a}" for a in change.actions),
                    *(f"  [bold red]BLOCKER[/bold red] {escape(b)}" for b in change.blockers),
                ]
            ),
            f"{change.monthly_cost_delta:+,.2f}",
            f"restart: {'yes' if r.restart_needed else 'no'}; "
            f"rollback: {'yes' if r.rollback_possible else 'no'}; {r.expected_disruption}"
            + "".join(f"\nIRREVERSIBLE: {escape(i)}" for i in r.irreversible),
        )
    table.add_row("Total", "", f"{total:+,.2f}", "", style="bold")
    return table


def history_table(environment: str, chains: dict[str, list[Record]]) -> Table:
    """Each step's ledger chain, oldest first: what happened, when, by whose approval."""
    table = Table(title=f"Ledger of {environment}", title_justify="left")
    for column in ("Step", "#", "Outcome", "At (UTC)", "What"):
        table.add_column(column, style="bold" if column == "Step" else None)
    for step_id, chain in chains.items():
        if not chain:
            table.add_row(step_id, "", "[dim]no record[/dim]", "", "")
        for record in chain:
            what = record.detail or (record.change.summary if record.change else "")
            if record.outcome == "progress":
                what = "done so far: " + ", ".join(sorted(record.after))
            what += "".join(
                f"\n  - {field}: recorded {v['recorded']!r}, found {v['found']!r}"
                for field, v in record.diff.items()
            )
            if record.approver:
                what += f"\n  approved by {record.approver}"
            table.add_row(
                step_id,
                str(record.seq),
                record.outcome,
                f"{record.finished_at:%Y-%m-%d %H:%M:%S}",
                escape(what),
            )
    return table


def _migration_rows(report: MigrationReport) -> tuple[list[str], list[list[str]]]:
    """Header and rows: cost per component before, then after each phase; gate and status."""
    ran = [p for p in report.phases if p.cost_after]
    header = ["Component", "Before", *(f"After phase {p.phase}" for p in ran)]
    first = ran[0].cost_before if ran else {}
    # A phase may add rows (phase 3's second region): every row any column has, $0 elsewhere.
    names = list(dict.fromkeys([*first, *(c for p in ran for c in p.cost_after)]))
    if "Total" in names:
        names.append(names.pop(names.index("Total")))
    rows = [
        [
            name,
            f"${first.get(name, 0.0):,.2f}",
            *(f"${p.cost_after.get(name, 0.0):,.2f}" for p in ran),
        ]
        for name in names
    ]
    rows.append(["Health gate", "", *(p.gate for p in ran)])
    rows.append(["Outcome", "", *(p.status for p in ran)])
    return header, rows


def migration_table(report: MigrationReport) -> Table:
    """The before/after table a migration run ends with."""
    table = Table(title=f"Migration of {report.environment}", title_justify="left")
    header, rows = _migration_rows(report)
    for i, name in enumerate(header):
        table.add_column(
            name, justify="left" if i == 0 else "right", style="bold" if i == 0 else ""
        )
    for row in rows:
        table.add_row(*row, style="bold" if row[0] == "Total" else "")
    for p in report.phases:
        if p.status != "completed" or not p.cost_after:
            table.caption = (table.caption or "") + f"phase {p.phase}: {p.status}. {p.detail}\n"
    return table


def migration_markdown(report: MigrationReport) -> str:
    """The same table as markdown, for the run's artifact."""
    header, rows = _migration_rows(report)
    lines = [f"# Migration of {report.environment}", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += [""] + [f"- phase {p.phase}: **{p.status}** {p.detail}" for p in report.phases]
    return "\n".join(lines) + "\n"
