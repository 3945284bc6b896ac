"""Savings realized: what each phase was estimated to save against what the bill shows.

A phase's completion is read from the ledger: the newest applied Record of its steps since
their last rollback (a phase still half-applied, or with nothing applied, has none). Cost
Explorer's GetCostAndUsage then gives the environment's daily cost by service, filtered by
its cost-allocation tags (`discovery.tags`, which must be activated as cost-allocation tags
in the Billing console, or the filter matches nothing), for `days` full days before the
completion day and up to `days` full days after it (the completion day itself is mixed, and
today is not billed in full yet, so neither counts). The saving is the difference of the two
daily averages, scaled to the price table's month, next to the plan's estimate per component.

Estimates come from the applied Changes' `monthly_cost_delta`, by step (each step changes one
component; nat.remove's estimate also includes the Elastic IPs it releases). Services map to
components as the bill names them: NAT gateway hours and bytes are billed under "EC2 - Other"
and public IPv4 addresses under "Amazon Virtual Private Cloud".

Each GetCostAndUsage request costs $0.01 on AWS: one per completed phase.
"""

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel

from phasegate.aws import AwsClients
from phasegate.config import EnvironmentConfig
from phasegate.cost import COMPONENTS
from phasegate.errors import AwsCallError
from phasegate.ledger import Ledger
from phasegate.logs import get_logger

COST_EXPLORER_REGION = "us-east-1"  # Cost Explorer has one endpoint, in us-east-1
METRIC = "UnblendedCost"

SERVICE_COMPONENTS: dict[str, str] = {
    "Amazon Elastic Container Service": "Compute",
    "Amazon Elastic Compute Cloud - Compute": "Compute",
    "Amazon Relational Database Service": "Database",
    "Amazon ElastiCache": "Cache",
    "Amazon Elastic Load Balancing": "Load Balancer",
    "EC2 - Other": "NAT Gateway",
    "Amazon Virtual Private Cloud": "Public IPv4",
}
STEP_COMPONENTS: dict[str, str] = {
    "nat": "NAT Gateway",
    "compute": "Compute",
    "database": "Database",
    "cache": "Cache",
    "spot": "Compute",
}
REGION_PART_COMPONENTS: dict[str, str] = {
    "compute": "Compute",
    "database": "Database",
    "cache": "Cache",
    "alb": "Load Balancer",
}
OTHER = "Other"
NO_BILLING_DATA = "no billing data yet"


class ComponentSaving(BaseModel):
    """Monthly dollars saved by one component: the plan's estimate, and the bill's."""

    component: str
    estimated: float
    realized: float | None


class PhaseSavings(BaseModel):
    """One phase: when it completed, the windows compared, and the savings (if billed)."""

    phase: int
    completed_at: datetime | None
    status: Literal["measured", "no billing data", "not completed"]
    detail: str
    before: tuple[date, date] | None = None  # first and last day, inclusive
    after: tuple[date, date] | None = None
    components: list[ComponentSaving] = []

    @property
    def estimated_total(self) -> float:
        return sum((c.estimated for c in self.components), 0.0)

    @property
    def realized_total(self) -> float | None:
        if any(c.realized is None for c in self.components):
            return None
        return sum((c.realized or 0.0 for c in self.components), 0.0)


class SavingsReport(BaseModel):
    environment: str
    days: int
    phases: list[PhaseSavings]

    @property
    def has_data(self) -> bool:
        return any(p.status == "measured" for p in self.phases)


class Completion(BaseModel):
    """A phase's applied changes since their last rollback, and when the last one finished."""

    phase: int
    finished_at: datetime | None
    estimated: dict[str, float]
    open_steps: list[str]


def step_component(step_id: str) -> str:
    """The component a step's estimate is set against. The bill groups by service, not by
    region, so each part of the second region (regions.expand.database, ...) counts with its
    service's component, where Cost Explorer puts its cost too."""
    head, _, rest = step_id.partition(".")
    if head == "regions":
        return REGION_PART_COMPONENTS.get(rest.rsplit(".", 1)[-1], OTHER)
    return STEP_COMPONENTS.get(head, OTHER)


def phase_completion(config: EnvironmentConfig, phase: int, step_ids: list[str]) -> Completion:
    """From the ledger: the phase's estimated saving per component and its completion time.

    A step's estimate sums the changes applied since its last rollback or drift (after drift
    AWS no longer shows what the earlier changes left, so they no longer count as saved).
    """
    ledger = Ledger(config)
    finished: list[datetime] = []
    estimated: dict[str, float] = {}
    open_steps = []
    for step_id in step_ids:
        if ledger.open_intent(phase, step_id) is not None:
            open_steps.append(step_id)
        chain = ledger.chain(phase, step_id)
        reset = max(
            (i for i, r in enumerate(chain) if r.outcome in ("rolled_back", "drift")), default=-1
        )
        for record in chain[reset + 1 :]:
            if record.outcome != "applied" or record.change is None:
                continue
            finished.append(record.finished_at)
            component = step_component(step_id)
            delta = record.change.monthly_cost_delta
            estimated[component] = estimated.get(component, 0.0) - delta
    return Completion(
        phase=phase,
        finished_at=max(finished) if finished and not open_steps else None,
        estimated=estimated,
        open_steps=open_steps,
    )


def tag_filter(tags: dict[str, str]) -> dict[str, Any]:
    """Cost Explorer's filter for resources carrying every one of `tags`."""
    each = [
        {"Tags": {"Key": key, "Values": [value], "MatchOptions": ["EQUALS"]}}
        for key, value in sorted(tags.items())
    ]
    return each[0] if len(each) == 1 else {"And": each}


def daily_costs(
    clients: AwsClients, tags: dict[str, str], start: date, end: date
) -> dict[date, dict[str, float]]:
    """Day -> component -> USD from GetCostAndUsage, days [start, end), all pages."""
    ce = clients.client("ce", region=COST_EXPLORER_REGION)
    params: dict[str, Any] = {
        "TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()},
        "Granularity": "DAILY",
        "Metrics": [METRIC],
        "GroupBy": [{"Type": "DIMENSION", "Key": "SERVICE"}],
        "Filter": tag_filter(tags),
    }
    days: dict[date, dict[str, float]] = {}
    while True:
        answer = ce.get_cost_and_usage(**params)
        for period in answer.get("ResultsByTime", []):
            day = date.fromisoformat(period["TimePeriod"]["Start"])
            if not start <= day < end:
                continue  # an answer for days not asked about is not this window's bill
            costs = days.setdefault(day, {})
            for group in period.get("Groups", []):
                component = SERVICE_COMPONENTS.get(group["Keys"][0], OTHER)
                amount = float(group["Metrics"][METRIC]["Amount"])
                costs[component] = costs.get(component, 0.0) + amount
        token = answer.get("NextPageToken")
        if not token:
            return days
        params["NextPageToken"] = token


def _average(days: dict[date, dict[str, float]], first: date, last: date) -> dict[str, float]:
    """Average daily USD per component over the billed days in [first, last]."""
    billed = [costs for day, costs in days.items() if first <= day <= last]
    totals: dict[str, float] = {}
    for costs in billed:
        for component, amount in costs.items():
            totals[component] = totals.get(component, 0.0) + amount
    return {c: v / len(billed) for c, v in totals.items()} if billed else {}


def measure_phase(
    config: EnvironmentConfig,
    clients: AwsClients,
    completion: Completion,
    days: int,
    hours_per_month: float,
    today: date,
) -> PhaseSavings:
    """Estimated against realized saving of one phase; no data yet says so."""
    if completion.finished_at is None:
        why = (
            f"steps {', '.join(completion.open_steps)} are half-applied"
            if completion.open_steps
            else "no change applied since the last rollback"
        )
        return PhaseSavings(
            phase=completion.phase, completed_at=None, status="not completed", detail=why
        )
    done = completion.finished_at.astimezone(UTC).date()
    before = (done - timedelta(days=days), done - timedelta(days=1))
    last_billed = today - timedelta(days=1)
    after = (done + timedelta(days=1), min(done + timedelta(days=days), last_billed))
    estimated = [
        ComponentSaving(component=c, estimated=completion.estimated[c], realized=None)
        for c in [*COMPONENTS, OTHER]
        if c in completion.estimated
    ]
    waiting = PhaseSavings(
        phase=completion.phase,
        completed_at=completion.finished_at,
        status="no billing data",
        detail=f"{NO_BILLING_DATA}: the first full day after the phase is {after[0]}, "
        f"billed by Cost Explorer from {after[0] + timedelta(days=1)}",
        components=estimated,
    )
    if after[0] > after[1]:
        return waiting
    bill = daily_costs_or_none(clients, config.discovery.tags, before[0], after[1])
    per_day_before, per_day_after = _average(bill, *before), _average(bill, *after)
    if not per_day_before or not per_day_after:
        missing = "before" if not per_day_before else "after"
        return waiting.model_copy(
            update={
                "detail": f"{NO_BILLING_DATA}: Cost Explorer has no cost tagged "
                f"{config.discovery.tags} for the days {missing} the phase"
            }
        )
    month = hours_per_month / 24
    components = [*COMPONENTS, OTHER]
    shown = [
        c
        for c in components
        if c in completion.estimated or c in per_day_before or c in per_day_after
    ]
    return PhaseSavings(
        phase=completion.phase,
        completed_at=completion.finished_at,
        status="measured",
        detail=f"daily averages of {before[0]}..{before[1]} against {after[0]}..{after[1]}",
        before=before,
        after=after,
        components=[
            ComponentSaving(
                component=c,
                estimated=completion.estimated.get(c, 0.0),
                realized=(per_day_before.get(c, 0.0) - per_day_after.get(c, 0.0)) * month,
            )
            for c in shown
        ],
    )


def daily_costs_or_none(
    clients: AwsClients, tags: dict[str, str], start: date, end_inclusive: date
) -> dict[date, dict[str, float]]:
    """daily_costs, with Cost Explorer's "not available yet" read as no days billed."""
    try:
        return daily_costs(clients, tags, start, end_inclusive + timedelta(days=1))
    except AwsCallError as exc:
        if exc.code == "DataUnavailableException":
            return {}
        raise


def savings_report(
    config: EnvironmentConfig,
    steps_by_phase: dict[int, list[str]],
    hours_per_month: float,
    days: int = 7,
) -> SavingsReport:
    """Every phase with steps: estimated against realized saving, from the ledger and CE."""
    log = get_logger("savings", environment=config.name)
    clients = AwsClients(config.aws)
    today = datetime.now(UTC).date()
    phases = []
    for phase, step_ids in sorted(steps_by_phase.items()):
        completion = phase_completion(config, phase, step_ids)
        result = measure_phase(config, clients, completion, days, hours_per_month, today)
        log.info("savings.phase", phase=phase, status=result.status, detail=result.detail)
        phases.append(result)
    return SavingsReport(environment=config.name, days=days, phases=phases)
