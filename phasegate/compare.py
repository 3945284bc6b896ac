"""The seed's comparison table, priced from an environment's own inventory and usage.

The seed (deployment-options.md) compares five ways to run the platform with hand estimates.
Here each alternative is priced from what discovery found (task sizes and counts, the
database, the cache, the load balancers, the NAT gateways) and from `config.usage`, at the
dated price table's rates. Where an alternative reuses today's shape (a database, the ALB,
the NAT gateways) the cost model prices a changed copy of the inventory, so every figure is
the same arithmetic `phasegate cost` does; the compute cells of Lambda, EKS and App Runner,
which no inventory holds, are priced here. Every cell lists its inputs; a cell whose input is
not configured names the config field that would fill it and carries no figure.
"""

import math
from typing import Literal

from pydantic import BaseModel, computed_field

from phasegate.config import EnvironmentConfig
from phasegate.cost import Component, CostLine, CostRow, PriceTable, price_inventory
from phasegate.inventory import AutoScalingGroup, Inventory

AlternativeKey = Literal[
    "fargate-x86", "fargate-arm64", "ec2-asg", "lambda", "eks-spot", "app-runner"
]

# vCPUs and GiB of the instance types an ASG or EKS node group may use (the EC2 instance-type
# pages); what `compare` needs to size a group that carries today's tasks.
EC2_SHAPES: dict[str, tuple[float, float]] = {
    f"{family}.{size}": shape
    for family in ("t3", "t4g")
    for size, shape in {
        "nano": (2, 0.5), "micro": (2, 1), "small": (2, 2), "medium": (2, 4),
        "large": (2, 8), "xlarge": (4, 16), "2xlarge": (8, 32),
    }.items()
}  # fmt: skip

LAMBDA_ARCHITECTURE = "arm64"  # Graviton, as the migration's targets are

Range = tuple[float, float]
# The seed's table (Compute, Database, Cache, Load Balancer, NAT Gateway, Total) by column;
# it predates the Public IPv4 charge, so it has no such row.
SEED_RANGES: dict[str, dict[str, Range]] = {
    "fargate-x86": {
        "Compute": (60, 80), "Database": (15, 25), "Cache": (15, 25),
        "Load Balancer": (20, 25), "NAT Gateway": (90, 90), "Total": (200, 255),
    },
    "ec2-asg": {
        "Compute": (30, 50), "Database": (15, 25), "Cache": (15, 25),
        "Load Balancer": (20, 25), "NAT Gateway": (0, 0), "Total": (80, 125),
    },
    "lambda": {
        "Compute": (10, 30), "Database": (15, 25), "Cache": (15, 25),
        "Load Balancer": (5, 10), "NAT Gateway": (0, 0), "Total": (45, 90),
    },
    "eks-spot": {
        "Compute": (40, 60), "Database": (15, 25), "Cache": (15, 25),
        "Load Balancer": (20, 25), "NAT Gateway": (0, 0), "Total": (90, 135),
    },
    "app-runner": {
        "Compute": (50, 70), "Database": (15, 25), "Cache": (15, 25),
        "Load Balancer": (0, 0), "NAT Gateway": (0, 0), "Total": (80, 120),
    },
}  # fmt: skip


class Cell(BaseModel):
    """One component of one alternative: its monthly figure and what it was computed from.

    `monthly` is None when an input is missing; `missing` then names the config fields (or
    the discovery gap) that would fill it.
    """

    component: Component
    monthly: float | None
    inputs: list[str]
    missing: list[str] = []


class Alternative(BaseModel):
    """One column: a way to run the platform, priced, with what it costs in operations."""

    key: AlternativeKey
    title: str
    cells: list[Cell]
    notes: list[str]
    off_seed: str = ""
    """Why this column may not match the seed's figures, said when it does not."""

    @computed_field
    @property
    def total(self) -> float | None:
        if any(c.monthly is None for c in self.cells):
            return None
        return sum((c.monthly or 0.0 for c in self.cells), 0.0)

    def cell(self, component: str) -> Cell:
        return next(c for c in self.cells if c.component == component)

    @property
    def missing(self) -> list[str]:
        return list(dict.fromkeys(m for c in self.cells for m in c.missing))


class Comparison(BaseModel):
    """The whole table for one environment, with the closing notes against the seed."""

    environment: str
    region: str
    prices_as_of: str
    alternatives: list[Alternative]
    closing: list[str]
    secondary_rows: list[CostRow] = []
    """The second region's rows (phase 3) as found, the same under every alternative."""

    @property
    def secondary_total(self) -> float:
        return sum((row.monthly for row in self.secondary_rows), 0.0)


def with_secondary_rows(comparison: Comparison, rows: list[CostRow], note: str) -> Comparison:
    """`comparison` with the second region's rows: a standby copy that every alternative
    keeps as it is today, priced with its own region's table (`note` says which)."""
    closing = f"The second region's rows are today's standby as found ({note}), in every column."
    return comparison.model_copy(
        update={"secondary_rows": rows, "closing": [*comparison.closing, closing]}
    )


def describe(line: CostLine) -> str:
    """A cost line as the input it is: what, how much, at which rate."""
    if line.unit_price is None:
        return f"{line.description} (no price)"
    return f"{line.description}: {line.quantity:,.6g} {line.unit} x ${line.unit_price:g}"


def _cells_of(inventory: Inventory, config: EnvironmentConfig, prices: PriceTable) -> list[Cell]:
    """The cost model's rows for `inventory` as cells (zero rows say 'none')."""
    report = price_inventory(inventory, config, prices)
    return [
        Cell(
            component=row.component,
            monthly=row.monthly,
            inputs=[describe(line) for line in row.lines] or ["none"],
        )
        for row in report.rows
    ]


def _replace(cells: list[Cell], *new: Cell) -> list[Cell]:
    by_component = {c.component: c for c in new}
    return [by_component.get(c.component, c) for c in cells]


def _with_architecture(inventory: Inventory, architecture: str) -> Inventory:
    services = [s.model_copy(update={"architecture": architecture}) for s in inventory.services]
    return inventory.model_copy(update={"services": services})


def _graviton_data(inventory: Inventory, config: EnvironmentConfig) -> Inventory:
    """The database and cache at the config's Graviton targets, as the seed's EC2 and EKS
    columns have them."""
    targets = config.targets
    return inventory.model_copy(
        update={
            "databases": [
                d.model_copy(update={"instance_class": targets.rds_instance_class})
                for d in inventory.databases
            ],
            "caches": [
                c.model_copy(update={"node_type": targets.redis_node_type})
                for c in inventory.caches
            ],
        }
    )


def _without_nat(inventory: Inventory) -> Inventory:
    return inventory.model_copy(
        update={"vpcs": [v.model_copy(update={"nat_gateways": []}) for v in inventory.vpcs]}
    )


def todays_capacity(inventory: Inventory) -> tuple[float, float, list[str]]:
    """vCPUs and GiB today's compute carries (Fargate tasks and ASG instances), with how."""
    vcpu = gib = 0.0
    inputs = []
    for s in inventory.services:
        if s.desired and s.launch_type not in ("EC2", "EXTERNAL"):
            vcpu += s.desired * s.cpu / 1024
            gib += s.desired * s.memory / 1024
            inputs.append(
                f"ECS service {s.name}: {s.desired} tasks x {s.cpu / 1024:g} vCPU / "
                f"{s.memory / 1024:g} GB"
            )
    for g in inventory.autoscaling_groups:
        shape = EC2_SHAPES.get(g.instance_types[0]) if g.instance_types else None
        if g.desired and shape:
            vcpu += g.desired * shape[0]
            gib += g.desired * shape[1]
            inputs.append(f"Auto Scaling group {g.name}: {g.desired} x {g.instance_types[0]}")
    return vcpu, gib, inputs


def instances_needed(inventory: Inventory, config: EnvironmentConfig) -> tuple[int, list[str]]:
    """How many `targets.ec2_instance_type` carry today's vCPU and memory (at least asg_min)."""
    instance_type = config.targets.ec2_instance_type
    shape = EC2_SHAPES.get(instance_type)
    if shape is None:
        raise KeyError(instance_type)
    vcpu, gib, inputs = todays_capacity(inventory)
    count = max(math.ceil(vcpu / shape[0]), math.ceil(gib / shape[1]), config.targets.asg_min, 1)
    inputs.append(
        f"today {vcpu:g} vCPU / {gib:g} GB over {instance_type} ({shape[0]:g} vCPU / "
        f"{shape[1]:g} GB) -> {count} (targets.asg_min {config.targets.asg_min})"
    )
    return count, inputs


def _asg_inventory(inventory: Inventory, count: int, instance_type: str) -> Inventory:
    """Today's environment with its tasks moved to `count` instances in the public subnets
    and the NAT gateways gone: the seed's EC2 Auto Scaling column."""
    public = [s.id for s in inventory.subnets if s.public]
    group = AutoScalingGroup(
        name=f"{inventory.environment}-app (compare)",
        arn="",
        min_size=count,
        max_size=count,
        desired=count,
        instance_types=[instance_type],
        in_service=count,
        subnets=public,
        target_groups=[],
        launch_template=None,
    )
    return _without_nat(inventory).model_copy(
        update={"services": [], "autoscaling_groups": [group]}
    )


def _fargate(
    key: AlternativeKey, inventory: Inventory, config: EnvironmentConfig, prices: PriceTable
) -> Alternative:
    architecture = "X86_64" if key == "fargate-x86" else "ARM64"
    cells = _cells_of(_with_architecture(inventory, architecture), config, prices)
    notes = ["no servers to manage; the highest price per vCPU of the options"]
    if key == "fargate-arm64":
        notes.append("the image must be built for arm64 (a multi-arch image runs on both)")
    title = f"ECS Fargate {'x86' if key == 'fargate-x86' else 'ARM64'}"
    return Alternative(key=key, title=title, cells=cells, notes=notes)


def _ec2(inventory: Inventory, config: EnvironmentConfig, prices: PriceTable) -> Alternative:
    itype = config.targets.ec2_instance_type
    notes = [
        "instances to patch and scale yourself: more manual management and monitoring (seed)",
        "no NAT gateways: instances in public subnets behind security groups",
        "root EBS volumes are not priced",
    ]
    base = _graviton_data(inventory, config)
    try:
        count, sizing = instances_needed(inventory, config)
    except KeyError:
        cells = _cells_of(_without_nat(base).model_copy(update={"services": []}), config, prices)
        missing = Cell(
            component="Compute",
            monthly=None,
            inputs=[],
            missing=[f"targets.ec2_instance_type: no vCPU/memory known for {itype!r}"],
        )
        return Alternative(
            key="ec2-asg", title=f"EC2 ASG {itype}", cells=_replace(cells, missing), notes=notes
        )
    cells = _cells_of(_asg_inventory(base, count, itype), config, prices)
    compute = cells[0].model_copy(update={"inputs": [*cells[0].inputs, *sizing]})
    return Alternative(
        key="ec2-asg", title=f"EC2 ASG {itype}", cells=_replace(cells, compute), notes=notes
    )


def _eks(ec2: Alternative, config: EnvironmentConfig, prices: PriceTable) -> Alternative:
    """The EC2 column with its nodes on Spot and the EKS cluster fee added to Compute."""
    hours, discount = prices.hours_per_month, prices.ec2_spot_discount.fraction
    fee = hours * prices.eks_cluster_hour.usd
    fee_input = f"EKS cluster: {hours:g} cluster-hour x ${prices.eks_cluster_hour.usd:g}"
    on_demand = ec2.cell("Compute")
    if on_demand.monthly is None:
        compute = on_demand.model_copy(update={"inputs": [fee_input]})
    else:
        compute = Cell(
            component="Compute",
            monthly=fee + on_demand.monthly * (1 - discount),
            inputs=[
                fee_input,
                *(f"{i} (on-demand)" for i in on_demand.inputs),
                f"Spot nodes at {discount:.0%} off on-demand (ec2_spot_discount, an estimate)",
            ],
        )
    return Alternative(
        key="eks-spot",
        title=f"EKS Spot {config.targets.ec2_instance_type}",
        cells=_replace(ec2.cells, compute),
        notes=[
            "requires Kubernetes skills to run the cluster (seed)",
            "Spot nodes can be interrupted at two minutes' notice",
            f"the cluster fee (${fee:,.2f} a month) is paid however small the workload",
        ],
        off_seed=f"The seed's EKS Compute leaves out the cluster fee (${fee:,.2f}).",
    )


def _task_memory_mb(inventory: Inventory, config: EnvironmentConfig) -> tuple[float | None, str]:
    if config.usage.lambda_memory_mb is not None:
        return float(config.usage.lambda_memory_mb), "usage.lambda_memory_mb"
    sizes = [s.memory for s in inventory.services if s.desired]
    if sizes:
        return float(max(sizes)), "today's task memory"
    return None, ""


def _lambda(inventory: Inventory, config: EnvironmentConfig, prices: PriceTable) -> Alternative:
    """Requests and GB-seconds of the configured traffic; API Gateway instead of the ALB;
    database, cache and NAT gateways as today (the functions run in the VPC to reach them)."""
    usage, rates = config.usage, prices.aws_lambda
    memory, memory_from = _task_memory_mb(inventory, config)
    missing = [
        field
        for field, value in (
            ("usage.requests_per_month", usage.requests_per_month),
            ("usage.avg_duration_ms", usage.avg_duration_ms),
            ("usage.lambda_memory_mb", memory),
        )
        if value is None
    ]
    if missing:
        compute = Cell(component="Compute", monthly=None, inputs=[], missing=missing)
    else:
        assert usage.requests_per_month is not None and usage.avg_duration_ms is not None
        assert memory is not None
        requests = usage.requests_per_month
        gb_seconds = requests * usage.avg_duration_ms / 1000 * memory / 1024
        gb_rate = rates.gb_second[LAMBDA_ARCHITECTURE].usd
        compute = Cell(
            component="Compute",
            monthly=requests / 1e6 * rates.request_per_million.usd + gb_seconds * gb_rate,
            inputs=[
                f"{requests / 1e6:,.6g} million requests (usage.requests_per_month) x "
                f"${rates.request_per_million.usd:g}",
                f"{gb_seconds:,.6g} GB-second {LAMBDA_ARCHITECTURE} x ${gb_rate:g}: "
                f"{usage.avg_duration_ms:g} ms (usage.avg_duration_ms) x {memory:g} MB "
                f"({memory_from})",
            ],
        )
    http = prices.api_gateway.http_per_million.usd
    if usage.requests_per_month is None:
        gateway = Cell(
            component="Load Balancer",
            monthly=None,
            inputs=[],
            missing=["usage.requests_per_month"],
        )
    else:
        gateway = Cell(
            component="Load Balancer",
            monthly=usage.requests_per_month / 1e6 * http,
            inputs=[
                f"API Gateway HTTP API: {usage.requests_per_month / 1e6:,.6g} million requests "
                f"x ${http:g} (a REST API: ${prices.api_gateway.rest_per_million.usd:g})"
            ],
        )
    base = inventory.model_copy(update={"services": [], "load_balancers": []})
    cells = _replace(_cells_of(base, config, prices), compute, gateway)
    return Alternative(
        key="lambda",
        title="Lambda + API Gateway",
        cells=cells,
        notes=[
            "15-minute execution limit: long AI operations do not fit (seed)",
            "cold starts of 1-3 seconds (seed)",
            "VPC Lambda has additional costs (seed): to reach RDS and Redis the functions run in "
            "private subnets, and their internet egress still needs the NAT gateways (priced "
            "as today) or VPC endpoints",
            "WebSocket connections are more complex (seed)",
        ],
        off_seed="The seed prices Lambda for under 1000 requests a day, with no NAT for its "
        "VPC egress; these figures are this environment's usage.",
    )


def _app_runner(inventory: Inventory, config: EnvironmentConfig, prices: PriceTable) -> Alternative:
    """Today's tasks as App Runner instances of the same size: memory billed every hour
    (provisioned), vCPU only while active; database, cache and NAT gateways as today."""
    rates, hours = prices.app_runner, prices.hours_per_month
    active_per_day = config.usage.active_hours_per_day
    services = [s for s in inventory.services if s.desired]
    if active_per_day is None or not services:
        missing = (
            ["usage.active_hours_per_day"]
            if active_per_day is None
            else ["no ECS service found to size instances from"]
        )
        compute = Cell(component="Compute", monthly=None, inputs=[], missing=missing)
    else:
        active = active_per_day * hours / 24
        monthly, inputs = 0.0, []
        for s in services:
            vcpu, gb = s.cpu / 1024, s.memory / 1024
            monthly += s.desired * (
                active * (vcpu * rates.active_vcpu_hour.usd + gb * rates.active_gb_hour.usd)
                + (hours - active) * gb * rates.provisioned_gb_hour.usd
            )
            inputs += [
                f"{s.name}: {s.desired} instances x {vcpu:g} vCPU / {gb:g} GB (today's tasks)",
                f"active {active:,.6g} h ({active_per_day:g} h/day, usage.active_hours_per_day)"
                f" x (vCPU ${rates.active_vcpu_hour.usd:g} + GB ${rates.active_gb_hour.usd:g})",
                f"provisioned {hours - active:,.6g} h x GB ${rates.provisioned_gb_hour.usd:g}",
            ]
        compute = Cell(component="Compute", monthly=monthly, inputs=inputs)
    balancer = Cell(component="Load Balancer", monthly=0.0, inputs=["included in App Runner"])
    base = inventory.model_copy(update={"services": [], "load_balancers": []})
    return Alternative(
        key="app-runner",
        title="App Runner",
        cells=_replace(_cells_of(base, config, prices), compute, balancer),
        notes=[
            "less control and customization than ECS; limited monitoring options (seed)",
            "reaches RDS and Redis through a VPC connector, which routes all egress through the "
            "VPC: internet egress still needs the NAT gateways (priced as today)",
            "instance sizes are fixed pairs (0.25-4 vCPU, 0.5-12 GB)",
        ],
        off_seed="The seed prices App Runner with no NAT; its VPC connector needs it for egress.",
    )


def _closing(alternatives: list[Alternative]) -> list[str]:
    """For each column outside the seed's total range: which rows differ, and why."""
    notes = []
    for alt in alternatives:
        seed = SEED_RANGES.get(alt.key)
        if seed is None:
            continue
        if alt.total is None:
            notes.append(f"{alt.title}: no total until {', '.join(alt.missing)} is set")
            continue
        low, high = seed["Total"]
        if low <= alt.total <= high:
            continue
        where = "above" if alt.total > high else "below"
        rows = [
            f"{c.component} ${c.monthly:,.2f} (seed {_range(seed[c.component])})"
            for c in alt.cells
            if c.component in seed
            and c.monthly is not None
            and not seed[c.component][0] - 0.5 <= c.monthly <= seed[c.component][1] + 0.5
        ]
        ipv4 = alt.cell("Public IPv4").monthly or 0.0
        if ipv4:
            rows.append(f"Public IPv4 ${ipv4:,.2f} (not in the seed, billed since Feb 2024)")
        notes.append(
            f"{alt.title}: ${alt.total:,.2f} is {where} the seed's {_range(seed['Total'])}; "
            f"rows outside the seed's: {'; '.join(rows) or 'none alone'}"
            + (f". {alt.off_seed}" if alt.off_seed else "")
        )
    if notes:
        notes.append("The seed's numbers are hand estimates; these are list prices x inventory.")
    return notes


def _range(r: Range) -> str:
    return f"${r[0]:g}" if r[0] == r[1] else f"${r[0]:g}-{r[1]:g}"


def compare_alternatives(
    inventory: Inventory, config: EnvironmentConfig, prices: PriceTable
) -> Comparison:
    """Every alternative of the seed (Fargate in both architectures) for `inventory`."""
    ec2 = _ec2(inventory, config, prices)
    alternatives = [
        _fargate("fargate-x86", inventory, config, prices),
        _fargate("fargate-arm64", inventory, config, prices),
        ec2,
        _lambda(inventory, config, prices),
        _eks(ec2, config, prices),
        _app_runner(inventory, config, prices),
    ]
    return Comparison(
        environment=inventory.environment,
        region=inventory.region,
        prices_as_of=str(prices.as_of),
        alternatives=alternatives,
        closing=_closing(alternatives),
    )
