"""Read-only snapshots a migration reports on: the monthly cost now, by component."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from phasegate.cost import load_price_table, price_inventory
from phasegate.inventory import discover
from tasks.runner import context_for


@task(name="cost-snapshot", task_run_name="cost of {env}", cache_policy=NO_CACHE)
def cost_snapshot(env: str) -> dict[str, float]:
    """Component -> monthly dollars, plus "Total", from a fresh discovery."""
    ctx = context_for(env)
    report = price_inventory(
        discover(ctx.config, ctx.clients), ctx.config, load_price_table(ctx.config.aws.region)
    )
    return {**report.by_component(), "Total": report.total}
