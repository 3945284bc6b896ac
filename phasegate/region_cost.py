"""What the second region costs a month: planned (regions.expand's plans) and found (`cost`).

A standby region is not free: it runs a copy of the database, the cache, the compute and a load
balancer all month, whether or not it ever takes traffic. regions.expand's plans state that
cost before anything is made, from a *mirror* of the primary's inventory: what each sub-step
copies into the second region, priced with the second region's own table
(config/pricing/REGION.yaml). After the phase, `phasegate cost` prices what discovery finds
there instead (`secondary_rows`).

The mirror assumes what regions.expand makes: the replica of the same class and storage,
Single-AZ (a cross-region replica is made Single-AZ); the cache of the same node type and
count; the same services at the same desired count on on-demand capacity with public IPs (the
second region has public subnets only, no NAT); one ALB per primary ALB; two Route 53 health
checks (one per failover record). The database's stream to the replica is inter-region
transfer, billed by the primary's region at its table's `data_transfer` rate, for the volume
in `usage.replication_gb_per_month`; unset, the note says it is not priced.
"""

from collections.abc import Iterable
from typing import Literal, get_args

from phasegate.config import EnvironmentConfig
from phasegate.cost import (
    COMPONENTS,
    FARGATE_PROVIDERS,
    CostLine,
    CostReport,
    CostRow,
    PriceTable,
    load_price_table,
    price_inventory,
)
from phasegate.errors import ConfigError
from phasegate.inventory import EcsService, Inventory, Subnet, Vpc

SecondaryPart = Literal["network", "database", "cache", "compute", "load_balancer", "dns"]
SECONDARY_PARTS: tuple[SecondaryPart, ...] = get_args(SecondaryPart)
FAILOVER_HEALTH_CHECKS = 2


def _secondary_region(config: EnvironmentConfig) -> str:
    if config.regions.secondary is None:
        raise ConfigError(f"{config.name}: regions.secondary is not set; no second region")
    return config.regions.secondary


def mirror_inventory(primary: Inventory, region: str, parts: Iterable[SecondaryPart]) -> Inventory:
    """What regions.expand makes in `region` for `parts`, as discovery would see it there."""
    wanted = set(parts)
    zones = max(2, max((len(lb.subnets) for lb in primary.load_balancers), default=2))
    subnets = [
        Subnet(
            id=f"planned-public-{i}",
            availability_zone=f"{region}{'abcdef'[i % 6]}",
            cidr=f"10.1.{i}.0/24",
            public=True,
            route_table_id="planned-public",
        )
        for i in range(zones)
    ]
    public = [s.id for s in subnets]
    network = Vpc(
        id="planned-vpc",
        cidr="10.1.0.0/16",
        subnets=subnets,
        route_tables=[],
        internet_gateways=["planned-igw"],
        nat_gateways=[],
    )
    compute = "compute" in wanted
    return Inventory(
        environment=primary.environment,
        region=region,
        vpcs=[network],
        services=[_on_demand(s, public) for s in primary.services] if compute else [],
        autoscaling_groups=[
            g.model_copy(update={"subnets": public}) for g in primary.autoscaling_groups
        ]
        if compute
        else [],
        load_balancers=[
            lb.model_copy(update={"subnets": public, "scheme": "internet-facing"})
            for lb in primary.load_balancers
        ]
        if "load_balancer" in wanted
        else [],
        databases=[
            db.model_copy(update={"multi_az": False, "replica_source": db.arn})
            for db in primary.databases
        ]
        if "database" in wanted
        else [],
        caches=list(primary.caches) if "cache" in wanted else [],
    )


def _on_demand(service: EcsService, subnets: list[str]) -> EcsService:
    """A Fargate service as the second region runs it: on-demand FARGATE with a public IP (no
    NAT there). A service on EC2 capacity stays as it is: its instances are priced as its
    Auto Scaling group's."""
    providers = {item["capacityProvider"] for item in service.capacity_provider_strategy}
    on_ec2 = service.launch_type in ("EC2", "EXTERNAL") or not providers <= set(FARGATE_PROVIDERS)
    if on_ec2:
        return service.model_copy(update={"subnets": subnets})
    return service.model_copy(
        update={
            "launch_type": "FARGATE",
            "capacity_provider_strategy": [],
            "assign_public_ip": True,
            "subnets": subnets,
        }
    )


def replication_lines(
    config: EnvironmentConfig, primary_prices: PriceTable, inventory: Inventory
) -> tuple[list[CostLine], str]:
    """The replica stream as inter-region transfer out of the primary's region, and a note;
    nothing once no database there is a replica (promoted by a failover, say)."""
    if not any(db.replica_source for db in inventory.databases):
        return [], ""
    gb = config.usage.replication_gb_per_month
    rates = primary_prices.data_transfer
    if rates is None:
        raise ConfigError(
            f"{primary_prices.shown}: data_transfer: no inter-region transfer price, needed "
            "by the cross-region read replica of regions.expand"
        )
    rate = rates.inter_region_out_gb.usd
    if gb is None:
        return [], (
            f"replication traffic not priced (${rate:g}/GB out of {primary_prices.region}): "
            "set usage.replication_gb_per_month"
        )
    line = CostLine(
        component="Database",
        description=f"replica stream from {primary_prices.region}: {gb:g} GB at inter-region "
        "transfer (config usage.replication_gb_per_month)",
        quantity=gb,
        unit="GB",
        unit_price=rate,
        monthly=gb * rate,
    )
    return [line], f"{gb:g} GB/month replication at ${rate:g}/GB"


def health_check_lines(prices: PriceTable, checks: int, optional_features: int) -> list[CostLine]:
    """Route 53 failover records' health checks (a global service, from `prices`)."""
    rates = prices.route53
    if rates is None:
        raise ConfigError(
            f"{prices.shown}: route53: no health check price, needed by the failover records "
            "of regions.expand"
        )
    lines = [
        CostLine(
            component="Load Balancer",
            description=f"{checks} Route 53 health checks (failover records)",
            quantity=checks,
            unit="health-check-month",
            unit_price=rates.health_check_aws_endpoint_month.usd,
            monthly=checks * rates.health_check_aws_endpoint_month.usd,
        )
    ]
    if optional_features:
        per = rates.health_check_optional_feature_month.usd
        lines.append(
            CostLine(
                component="Load Balancer",
                description=f"{checks} x {optional_features} optional health check features",
                quantity=checks * optional_features,
                unit="feature-month",
                unit_price=per,
                monthly=checks * optional_features * per,
            )
        )
    return lines


def monthly_cost_of_secondary(
    config: EnvironmentConfig,
    primary: Inventory,
    parts: Iterable[SecondaryPart] = SECONDARY_PARTS,
    *,
    health_checks: int = FAILOVER_HEALTH_CHECKS,
    health_check_features: int = 0,
) -> tuple[float, str]:
    """What `parts` of the second region add a month (USD, rounded to cents), and a note
    for the plan's summary: the region, the price table's date, what is assumed or unpriced.

    `primary` is the primary's inventory (a step's observe); a regions.expand sub-step passes
    its own part, e.g. `monthly_cost_of_secondary(ctx.config, inv, ["database"])`. "network"
    costs nothing (public subnets, no NAT); "dns" is the failover records' health checks
    (`health_check_features`: HTTPS, string matching... each priced on top).
    """
    wanted = list(dict.fromkeys(parts))
    unknown = [p for p in wanted if p not in SECONDARY_PARTS]
    if unknown:
        raise ValueError(f"unknown parts {unknown}; parts are {list(SECONDARY_PARTS)}")
    region = _secondary_region(config)
    prices = load_price_table(region)
    primary_prices = load_price_table(config.aws.region)
    mirror = mirror_inventory(primary, region, wanted)
    lines = list(price_inventory(mirror, config, prices).lines)
    notes = [f"{region} prices as of {prices.as_of}"]
    extra, note = replication_lines(config, primary_prices, mirror)
    lines += extra
    if note:
        notes.append(note)
    if "dns" in wanted:
        lines += health_check_lines(primary_prices, health_checks, health_check_features)
    if "compute" in wanted and any(s.capacity_provider_strategy for s in primary.services):
        notes.append("compute priced on-demand (Spot not copied)")
    usd = round(sum(line.monthly for line in lines), 2)
    return usd, "; ".join(notes)


def secondary_rows(
    config: EnvironmentConfig, found: Inventory, health_checks: int = 0
) -> tuple[list[CostRow], str]:
    """The second region's rows for a cost report: what discovery found there (and the
    `health_checks` of its failover records), priced with its table, each row labelled with
    the region; plus a note (the table's date, and the replica stream when not priced)."""
    prices = load_price_table(found.region)
    primary_prices = load_price_table(config.aws.region)
    lines = list(price_inventory(found, config, prices).lines)
    extra, note = replication_lines(config, primary_prices, found)
    lines += extra
    if health_checks:
        lines += health_check_lines(primary_prices, health_checks, 0)
    rows = [
        CostRow(component=c, region=found.region, lines=[x for x in lines if x.component == c])
        for c in COMPONENTS
    ]
    return rows, "; ".join(n for n in (f"{found.region} prices as of {prices.as_of}", note) if n)


def with_secondary(
    report: CostReport, config: EnvironmentConfig, found: Inventory | None, health_checks: int = 0
) -> CostReport:
    """`report` with the second region's rows after the primary's (unchanged without one)."""
    if found is None:
        return report
    rows, note = secondary_rows(config, found, health_checks)
    return report.model_copy(update={"rows": [*report.rows, *rows], "notes": [*report.notes, note]})
