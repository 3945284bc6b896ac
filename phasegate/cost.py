"""The cost model: what an environment costs a month, by component, from a dated price table.

A report is list prices (config/pricing/REGION.yaml) times what discovery found, plus the usage
no inventory can see (config.usage: NAT traffic, ALB load). Plans and approvals quote its deltas,
so a price the table lacks is a ConfigError naming the file and the class, never a silent $0.

The rows follow the seed's comparison table (Compute, Database, Cache, Load Balancer, NAT
Gateway) plus Public IPv4, which AWS bills for every public address since February 2024 and
which removing the NAT gateways trades against.
"""

from datetime import date
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, computed_field

# The config loader refuses duplicate keys; a duplicated price would otherwise silently win.
from phasegate.config import EnvironmentConfig, read_yaml
from phasegate.errors import ConfigError
from phasegate.home import config_dir, display_path
from phasegate.inventory import AutoScalingGroup, EcsService, Inventory

Component = Literal["Compute", "Database", "Cache", "Load Balancer", "NAT Gateway", "Public IPv4"]
COMPONENTS: tuple[Component, ...] = get_args(Component)

RateField = Literal[
    "ec2_instance_hour",
    "rds_postgres_instance_hour",
    "rds_storage_gb_month",
    "elasticache_node_hour",
]
FARGATE_PROVIDERS = ("FARGATE", "FARGATE_SPOT")


class _Strict(BaseModel):
    """Unknown keys are errors, so a misspelt price is reported rather than ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(_Strict):
    """A list price; `as_of` when it was read on another day than the table's `as_of`."""

    usd: float = Field(ge=0)
    source: str = Field(pattern=r"^https://\S+$")
    as_of: date | None = None


class Estimate(_Strict):
    """A figure AWS publishes no list price for (a Spot discount): a fraction, with its page."""

    fraction: float = Field(ge=0, le=1)
    source: str = Field(pattern=r"^https://\S+$")
    as_of: date | None = None


class FargateRates(_Strict):
    vcpu_hour: Price
    gb_hour: Price


class NatGatewayRates(_Strict):
    hour: Price
    gb_processed: Price


class LoadBalancerRates(_Strict):
    hour: Price
    lcu_hour: Price


class LambdaRates(_Strict):
    """Requests per million and duration per GB-second, by architecture (x86_64, arm64)."""

    request_per_million: Price
    gb_second: dict[str, Price]


class ApiGatewayRates(_Strict):
    """First-tier request prices: HTTP APIs and REST APIs, per million requests."""

    http_per_million: Price
    rest_per_million: Price


class MonitoringRates(_Strict):
    """What phase 2's monitoring costs a month: standard-resolution alarms (percentile ones
    included), dashboards, custom metrics (a log metric filter's), budgets. The per-account
    free tier (10 alarms, 3 dashboards) is left out: it is not per environment."""

    alarm_month: Price
    dashboard_month: Price
    custom_metric_month: Price
    budget_month: Price
    sns_email_per_100k: Price


class CloudFrontRates(_Strict):
    """cdn.enable's distribution: HTTPS requests, per 10,000 (North America and Europe)."""

    https_requests_per_10k: Price


class DataTransferRates(_Strict):
    """Data sent from this region to another (a cross-region replica's stream), per GB; the
    sending region bills it."""

    inter_region_out_gb: Price


class Route53Rates(_Strict):
    """Failover records' health checks on AWS endpoints, per month; a global service."""

    health_check_aws_endpoint_month: Price
    health_check_optional_feature_month: Price


class AppRunnerRates(_Strict):
    """App Runner bills vCPU and memory while active, memory only while provisioned idle."""

    active_vcpu_hour: Price
    active_gb_hour: Price
    provisioned_gb_hour: Price


class PriceTable(_Strict):
    """One region's list prices, as read on `as_of` from the pages each price names."""

    region: str
    currency: Literal["USD"]
    as_of: date
    hours_per_month: float = Field(gt=0)
    sources: dict[str, str]
    fargate: dict[str, FargateRates]
    fargate_spot: dict[str, FargateRates]
    ec2_instance_hour: dict[str, Price]
    rds_postgres_instance_hour: dict[str, Price]
    rds_storage_gb_month: dict[str, Price]
    elasticache_node_hour: dict[str, Price]
    nat_gateway: NatGatewayRates
    application_load_balancer: LoadBalancerRates
    public_ipv4_hour: Price
    aws_lambda: LambdaRates
    api_gateway: ApiGatewayRates
    eks_cluster_hour: Price
    ec2_spot_discount: Estimate
    app_runner: AppRunnerRates
    monitoring: MonitoringRates
    cloudfront: CloudFrontRates | None = None  # a global service: in us-east-1's table
    data_transfer: DataTransferRates | None = None  # phase 3's second region
    route53: Route53Rates | None = None

    path: Path | None = Field(default=None, exclude=True)

    @property
    def shown(self) -> str:
        """How errors name this table: its file when it came from one."""
        return display_path(self.path) if self.path else f"price table for {self.region}"

    def _missing(self, field: str, key: str, used_by: str) -> ConfigError:
        return ConfigError(f"{self.shown}: {field}: no price for {key!r}, needed by {used_by}")

    def rate(self, field: RateField, key: str, used_by: str) -> float:
        """The USD price of `key` (an instance class, node type or storage type) in `field`."""
        price = getattr(self, field).get(key)
        if price is None:
            raise self._missing(field, key, used_by)
        return price.usd

    def fargate_rates(self, architecture: str, spot: bool, used_by: str) -> FargateRates:
        """Fargate vCPU-hour and GB-hour prices for a cpuArchitecture, on-demand or Spot."""
        field = "fargate_spot" if spot else "fargate"
        rates = getattr(self, field).get(architecture)
        if rates is None:
            raise self._missing(field, architecture, used_by)
        return rates


class CostLine(BaseModel):
    """One priced quantity; unit_price None means the price could not be known (monthly $0)."""

    component: Component
    description: str
    quantity: float
    unit: str
    unit_price: float | None
    monthly: float


class CostRow(BaseModel):
    """One component of the seed's cost table, with the lines that make it up; `region` is
    set on the rows of the second region (phase 3), None on the environment's own."""

    component: Component
    lines: list[CostLine]
    region: str | None = None

    @property
    def label(self) -> str:
        """'Compute', or 'Compute (us-west-2)' for a row of the second region."""
        return f"{self.component} ({self.region})" if self.region else self.component

    @computed_field
    @property
    def monthly(self) -> float:
        return sum((line.monthly for line in self.lines), 0.0)


class CostReport(BaseModel):
    """An environment's monthly cost by component, at the prices of `prices_as_of`.

    Every component is present, in the seed table's order and zeros included, so two reports
    (before and after a phase) compare row by row.
    """

    environment: str
    region: str
    prices_as_of: date
    rows: list[CostRow]
    notes: list[str] = Field(default_factory=list)

    @computed_field
    @property
    def total(self) -> float:
        return sum((row.monthly for row in self.rows), 0.0)

    @property
    def lines(self) -> list[CostLine]:
        return [line for row in self.rows for line in row.lines]

    def by_component(self) -> dict[str, float]:
        """Monthly dollars by row label (component, region for the second's), in table order."""
        return {row.label: row.monthly for row in self.rows}

    def row(self, component: str) -> float:
        """One row of the table by name, 'Total' included."""
        if component == "Total":
            return self.total
        rows = self.by_component()
        if component not in rows:
            raise KeyError(f"{component!r} is not a cost row; rows are {[*COMPONENTS, 'Total']}")
        return rows[component]


def load_price_table(region: str) -> PriceTable:
    """The price table of `region` from config_dir()/pricing/REGION.yaml."""
    path = config_dir() / "pricing" / f"{region}.yaml"
    shown = display_path(path)
    data = read_yaml(path, missing=f"no price table for region {region!r} (file not found)")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{shown}: expected a mapping of price sections, got {type(data).__name__}"
        )
    try:
        table = PriceTable.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            "\n".join(
                f"{shown}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                for err in exc.errors()
            )
        ) from None
    if table.region != region:
        raise ConfigError(f"{shown}: region: {table.region!r} does not match the file name")
    return table.model_copy(update={"path": path})


def _line(
    component: Component, description: str, quantity: float, unit: str, unit_price: float
) -> CostLine:
    return CostLine(
        component=component,
        description=description,
        quantity=quantity,
        unit=unit,
        unit_price=unit_price,
        monthly=quantity * unit_price,
    )


def _fargate_tasks(service: EcsService) -> dict[str, float]:
    """Desired tasks per Fargate capacity provider, placed as ECS places them.

    Base tasks first, the rest split by weight (all weights 0 count as equal); counts may be
    fractional, the expected split.
    Tasks on EC2 capacity are left out: their instances are priced as Auto Scaling groups.
    """
    strategy = service.capacity_provider_strategy
    if not strategy:
        on_ec2 = service.launch_type in ("EC2", "EXTERNAL")
        return {} if on_ec2 or not service.desired else {"FARGATE": float(service.desired)}
    tasks = {item["capacityProvider"]: 0.0 for item in strategy}
    remaining = float(service.desired)
    for item in strategy:
        base = min(float(item.get("base", 0)), remaining)
        tasks[item["capacityProvider"]] += base
        remaining -= base
    weights = {item["capacityProvider"]: float(item.get("weight", 0)) for item in strategy}
    if not any(weights.values()):
        weights = dict.fromkeys(weights, 1.0)
    total_weight = sum(weights.values())
    for provider, weight in weights.items():
        tasks[provider] += remaining * weight / total_weight
    return {p: n for p, n in tasks.items() if p in FARGATE_PROVIDERS and n}


def _compute(inventory: Inventory, prices: PriceTable) -> list[CostLine]:
    hours = prices.hours_per_month
    lines = []
    for service in inventory.services:
        label = f"ECS service {service.cluster}/{service.name}"
        vcpu, gb = service.cpu / 1024, service.memory / 1024
        for provider, tasks in _fargate_tasks(service).items():
            rates = prices.fargate_rates(
                service.architecture, provider == "FARGATE_SPOT", f"{label} ({provider})"
            )
            what = f"{label}: {tasks:g} {provider} tasks {service.architecture}"
            lines += [
                _line(
                    "Compute",
                    f"{what} x {vcpu:g} vCPU",
                    tasks * vcpu * hours,
                    "vCPU-hour",
                    rates.vcpu_hour.usd,
                ),
                _line(
                    "Compute",
                    f"{what} x {gb:g} GB",
                    tasks * gb * hours,
                    "GB-hour",
                    rates.gb_hour.usd,
                ),
            ]
    for group in inventory.autoscaling_groups:
        if group.desired:
            lines.append(_asg_line(group, prices))
    return lines


def _asg_line(group: AutoScalingGroup, prices: PriceTable) -> CostLine:
    """Desired instances at the first type discovery saw running.

    With no instance running there is no type to read (the launch template is not
    discovered), so the line says so and carries no price rather than guessing one.
    """
    label = f"Auto Scaling group {group.name}"
    quantity = group.desired * prices.hours_per_month
    if not group.instance_types:
        return CostLine(
            component="Compute",
            description=f"{label}: {group.desired} instances of unknown type (none running); "
            "not priced",
            quantity=quantity,
            unit="instance-hour",
            unit_price=None,
            monthly=0.0,
        )
    instance_type = group.instance_types[0]
    return _line(
        "Compute",
        f"{label}: {group.desired} x {instance_type}",
        quantity,
        "instance-hour",
        prices.rate("ec2_instance_hour", instance_type, label),
    )


def _database(inventory: Inventory, prices: PriceTable) -> list[CostLine]:
    """Instance hours and storage; Multi-AZ bills a standby instance and its storage too."""
    lines = []
    for db in inventory.databases:
        label = f"database {db.identifier}"
        if db.engine != "postgres":
            raise ConfigError(
                f"{prices.shown}: no RDS prices for engine {db.engine!r}, needed by {label}; "
                "the table prices PostgreSQL"
            )
        copies = 2 if db.multi_az else 1
        deployment = "Multi-AZ (primary + standby)" if db.multi_az else "Single-AZ"
        lines += [
            _line(
                "Database",
                f"RDS {label}: {db.instance_class} {deployment}",
                copies * prices.hours_per_month,
                "instance-hour",
                prices.rate("rds_postgres_instance_hour", db.instance_class, label),
            ),
            _line(
                "Database",
                f"RDS {label}: {db.allocated_storage_gb} GB {db.storage_type} {deployment}",
                copies * db.allocated_storage_gb,
                "GB-month",
                prices.rate("rds_storage_gb_month", db.storage_type, label),
            ),
        ]
    return lines


def _cache(inventory: Inventory, prices: PriceTable) -> list[CostLine]:
    return [
        _line(
            "Cache",
            f"ElastiCache {group.id}: {group.node_count} x {group.node_type}",
            group.node_count * prices.hours_per_month,
            "node-hour",
            prices.rate("elasticache_node_hour", group.node_type, f"cache {group.id}"),
        )
        for group in inventory.caches
    ]


def _load_balancers(
    inventory: Inventory, config: EnvironmentConfig, prices: PriceTable
) -> list[CostLine]:
    """Every load balancer is priced as an ALB, at the LCU average config.usage assumes."""
    hours, rates = prices.hours_per_month, prices.application_load_balancer
    lcu = config.usage.alb_lcu_average
    lines = []
    for lb in inventory.load_balancers:
        lines += [
            _line("Load Balancer", f"ALB {lb.name}", hours, "ALB-hour", rates.hour.usd),
            _line(
                "Load Balancer",
                f"ALB {lb.name}: {lcu:g} LCU average (config usage.alb_lcu_average)",
                lcu * hours,
                "LCU-hour",
                rates.lcu_hour.usd,
            ),
        ]
    return lines


def _nat_gateways(
    inventory: Inventory, config: EnvironmentConfig, prices: PriceTable
) -> list[CostLine]:
    """Gateway hours plus the month's processed traffic; no gateway, no traffic charge."""
    count = len(inventory.nat_gateways)
    if not count:
        return []
    gb = config.usage.nat_processed_gb_per_month
    return [
        _line(
            "NAT Gateway",
            f"{count} NAT gateways",
            count * prices.hours_per_month,
            "NAT-gateway-hour",
            prices.nat_gateway.hour.usd,
        ),
        _line(
            "NAT Gateway",
            f"{gb:g} GB processed (config usage.nat_processed_gb_per_month)",
            gb,
            "GB",
            prices.nat_gateway.gb_processed.usd,
        ),
    ]


def _public_ipv4(inventory: Inventory, prices: PriceTable) -> list[CostLine]:
    """Public addresses discovery can count: NAT EIPs, ALB nodes, task and instance IPs.

    An ASG counts when any of its subnets is public; an internal ALB has no public address.
    """
    public_subnets = {s.id for s in inventory.subnets if s.public}
    counts = {
        "NAT gateway Elastic IPs": sum(len(n.allocation_ids) for n in inventory.nat_gateways),
        "ALB node addresses (one per subnet)": sum(
            len(lb.subnets) for lb in inventory.load_balancers if lb.scheme != "internal"
        ),
        "ECS task public IPs (assignPublicIp)": sum(
            s.desired for s in inventory.services if s.assign_public_ip
        ),
        "Auto Scaling instances in public subnets": sum(
            g.desired for g in inventory.autoscaling_groups if public_subnets & set(g.subnets)
        ),
    }
    return [
        _line(
            "Public IPv4",
            f"{count} {what}",
            count * prices.hours_per_month,
            "address-hour",
            prices.public_ipv4_hour.usd,
        )
        for what, count in counts.items()
        if count
    ]


def price_inventory(
    inventory: Inventory, config: EnvironmentConfig, prices: PriceTable
) -> CostReport:
    """The monthly cost of `inventory` at `prices`, with config's usage assumptions."""
    if prices.region != inventory.region:
        raise ConfigError(
            f"{prices.shown}: prices {prices.region}, but environment {inventory.environment} "
            f"is in {inventory.region}"
        )
    lines = [
        *_compute(inventory, prices),
        *_database(inventory, prices),
        *_cache(inventory, prices),
        *_load_balancers(inventory, config, prices),
        *_nat_gateways(inventory, config, prices),
        *_public_ipv4(inventory, prices),
    ]
    return CostReport(
        environment=inventory.environment,
        region=inventory.region,
        prices_as_of=prices.as_of,
        rows=[
            CostRow(component=c, lines=[x for x in lines if x.component == c]) for c in COMPONENTS
        ],
    )
