"""Read-only snapshots a migration reports on: the monthly cost now, by component, and the
savings the bill shows so far."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from phasegate.cost import load_price_table, price_inventory
from phasegate.cost_tables import savings_markdown
from phasegate.errors import PhasegateError
from phasegate.inventory import discover
from phasegate.region_cost import with_secondary
from phasegate.savings import savings_report
from phasegate.secondary_region import discover_secondary, tagged_health_checks
from tasks.registry import PHASE_STEPS
from tasks.runner import context_for


@task(name="cost-snapshot", task_run_name="cost of {env}", cache_policy=NO_CACHE)
def cost_snapshot(env: str) -> dict[str, float]:
    """Component -> monthly dollars, plus "Total", from a fresh discovery (the second
    region's rows included once it has resources)."""
    ctx = context_for(env)
    report = price_inventory(
        discover(ctx.config, ctx.clients), ctx.config, load_price_table(ctx.config.aws.region)
    )
    found = discover_secondary(ctx.config)
    checks = tagged_health_checks(ctx.config) if found is not None else 0
    report = with_secondary(report, ctx.config, found, checks)
    return {**report.by_component(), "Total": report.total}


@task(name="savings-snapshot", task_run_name="savings of {env}", cache_policy=NO_CACHE)
def savings_section(env: str) -> str:
    """The report's savings section (estimated vs realized per phase, or "no billing data
    yet"); a bill that cannot be read (no ce:GetCostAndUsage) is said, never a failed run."""
    ctx = context_for(env)
    steps = {phase: [s.id for s in classes] for phase, classes in PHASE_STEPS.items()}
    hours = load_price_table(ctx.config.aws.region).hours_per_month
    try:
        return savings_markdown(savings_report(ctx.config, steps, hours))
    except PhasegateError as exc:
        return f"## Savings\n\nnot available: {exc}\n"
