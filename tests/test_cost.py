"""The cost model against a hand-built inventory of the seeded shape, priced from the real table.

Most expectations are computed from the YAML's own numbers, so a price update does not break
them; test_today_in_literal_dollars pins the table itself, so a wrong price does.
"""

import functools
from datetime import date
from pathlib import Path

import pytest
import yaml

from phasegate.config import EnvironmentConfig
from phasegate.cost import COMPONENTS, CostReport, PriceTable, load_price_table, price_inventory
from phasegate.errors import ConfigError
from phasegate.home import REPO_ROOT
from phasegate.inventory import (
    AutoScalingGroup,
    CacheGroup,
    Database,
    EcsService,
    Inventory,
    LoadBalancer,
    NatGateway,
    RouteTable,
    Subnet,
    Vpc,
)

HOURS = 730
CENT = 0.005
PUBLIC = ["subnet-pub-a", "subnet-pub-b"]
PRIVATE = ["subnet-priv-a", "subnet-priv-b"]


@pytest.fixture(scope="module")
def prices() -> PriceTable:
    return load_price_table("us-east-1")


def _config(**usage: float) -> EnvironmentConfig:
    return EnvironmentConfig.model_validate(
        {
            "name": "demo",
            "tier": "dev",
            "discovery": {"tags": {"Environment": "demo"}},
            "usage": usage,
        }
    )


def _vpc(nat: bool) -> Vpc:
    subnets = [
        Subnet(
            id=subnet,
            availability_zone=f"us-east-1{az}",
            cidr=f"10.1.{i}.0/24",
            public=subnet in PUBLIC,
            route_table_id="rtb-public" if subnet in PUBLIC else f"rtb-private-{az}",
        )
        for i, (subnet, az) in enumerate(zip(PUBLIC + PRIVATE, "abab", strict=True))
    ]
    nats = [
        NatGateway(
            id=f"nat-{az}",
            state="available",
            subnet_id=subnet,
            allocation_ids=[f"eipalloc-{az}"],
            public_ips=[f"198.51.100.{i}"],
        )
        for i, (subnet, az) in enumerate(zip(PUBLIC, "ab", strict=True))
    ]
    return Vpc(
        id="vpc-1",
        cidr="10.1.0.0/16",
        subnets=subnets,
        route_tables=[RouteTable(id="rtb-public", subnet_ids=PUBLIC, routes=[])],
        internet_gateways=["igw-1"],
        nat_gateways=nats if nat else [],
    )


def _service(**changes: object) -> EcsService:
    service = EcsService(
        cluster="demo",
        name="demo-api",
        arn="arn:aws:ecs:us-east-1:123456789012:service/demo/demo-api",
        task_definition="arn:aws:ecs:us-east-1:123456789012:task-definition/demo-api:1",
        architecture="X86_64",
        cpu=512,
        memory=1024,
        images=["public.ecr.aws/phasegate/platform-api:1.4.2"],
        desired=2,
        running=2,
        launch_type="FARGATE",
        capacity_provider_strategy=[],
        subnets=PRIVATE,
        security_groups=["sg-app"],
        assign_public_ip=False,
        target_groups=["arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/demo/1"],
    )
    return service.model_copy(update=changes)


def _database(**changes: object) -> Database:
    db = Database(
        identifier="demo-db",
        arn="arn:aws:rds:us-east-1:123456789012:db:demo-db",
        instance_class="db.t3.micro",
        engine="postgres",
        engine_version="16.4",
        multi_az=False,
        allocated_storage_gb=20,
        storage_type="gp3",
        status="available",
    )
    return db.model_copy(update=changes)


def _cache(node_type: str = "cache.t3.micro") -> CacheGroup:
    return CacheGroup(
        id="demo-redis",
        arn="arn:aws:elasticache:us-east-1:123456789012:replicationgroup:demo-redis",
        node_type=node_type,
        node_count=2,
        engine_version="7.1",
        status="available",
        member_clusters=["demo-redis-001", "demo-redis-002"],
    )


def _asg(instance_types: list[str]) -> AutoScalingGroup:
    return AutoScalingGroup(
        name="demo-app",
        arn="arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:1:demo-app",
        min_size=1,
        max_size=5,
        desired=2,
        instance_types=instance_types,
        in_service=2 if instance_types else 0,
        subnets=PUBLIC,
        target_groups=[],
        launch_template="demo-app",
    )


def today() -> Inventory:
    """The seeded architecture of DESIGN.md."""
    return Inventory(
        environment="demo",
        region="us-east-1",
        vpcs=[_vpc(nat=True)],
        services=[_service()],
        load_balancers=[
            LoadBalancer(
                arn="arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/demo/1",
                name="demo-alb",
                dns_name="demo-alb.us-east-1.elb.amazonaws.com",
                scheme="internet-facing",
                subnets=PUBLIC,
                security_groups=["sg-alb"],
                target_groups=[],
            )
        ],
        databases=[_database()],
        caches=[_cache()],
        autoscaling_groups=[],
    )


def after_phase_1() -> Inventory:
    """No NAT, ARM64 tasks with public IPs in the public subnets, Graviton database and cache."""
    return today().model_copy(
        update={
            "vpcs": [_vpc(nat=False)],
            "services": [_service(architecture="ARM64", subnets=PUBLIC, assign_public_ip=True)],
            "databases": [_database(instance_class="db.t4g.micro")],
            "caches": [_cache("cache.t4g.micro")],
        }
    )


def report(inventory: Inventory, prices: PriceTable, **usage: float) -> CostReport:
    return price_inventory(inventory, _config(**usage), prices)


def test_every_price_names_its_page_and_the_table_its_date(prices: PriceTable) -> None:
    data = yaml.safe_load((REPO_ROOT / "config/pricing/us-east-1.yaml").read_text())

    def leaves(node: object) -> list[dict]:
        if isinstance(node, dict) and "usd" in node:
            return [node]
        if isinstance(node, dict):
            return [leaf for value in node.values() for leaf in leaves(value)]
        return []

    found = leaves({k: v for k, v in data.items() if k != "sources"})
    assert len(found) > 40
    assert all(p["source"].startswith("https://aws.amazon.com/") for p in found)
    assert isinstance(prices.as_of, date)
    assert prices.hours_per_month == HOURS


def test_today_in_literal_dollars(prices: PriceTable) -> None:
    rows = report(today(), prices).by_component()
    assert rows["Compute"] == pytest.approx(36.0401, abs=CENT)  # 2 x (0.5 x 0.04048 + 0.004445)
    assert rows["Database"] == pytest.approx(15.44, abs=CENT)  # 0.018 x 730 + 20 x 0.115
    assert rows["Cache"] == pytest.approx(24.82, abs=CENT)  # 2 x 0.017 x 730
    assert rows["Load Balancer"] == pytest.approx(22.265, abs=CENT)  # (0.0225 + 0.008) x 730
    assert rows["NAT Gateway"] == pytest.approx(88.20, abs=CENT)  # 2 x 0.045 x 730 + 500 x 0.045
    assert rows["Public IPv4"] == pytest.approx(14.60, abs=CENT)  # (2 EIPs + 2 ALB) x 0.005 x 730
    assert report(today(), prices).total == pytest.approx(201.3651, abs=CENT)


def test_today_rows_follow_the_yaml_file() -> None:
    """The rows recomputed from the pricing file read as plain YAML, not through PriceTable: a
    loader that read the wrong field, or a formula that used one, fails here; a price update
    does not."""
    raw = yaml.safe_load((REPO_ROOT / "config/pricing/us-east-1.yaml").read_text())

    def usd(*path: str) -> float:
        return float(functools.reduce(dict.__getitem__, path, raw)["usd"])

    hours = raw["hours_per_month"]
    cost = report(today(), load_price_table("us-east-1"))
    # 2 tasks of 512 CPU units (0.5 vCPU) and 1024 MiB (1 GB), X86_64 Fargate
    task_hour = 0.5 * usd("fargate", "X86_64", "vcpu_hour") + usd("fargate", "X86_64", "gb_hour")
    alb = "application_load_balancer"
    expected = {
        "Compute": 2 * task_hour * hours,
        "Database": usd("rds_postgres_instance_hour", "db.t3.micro") * hours
        + 20 * usd("rds_storage_gb_month", "gp3"),
        "Cache": 2 * usd("elasticache_node_hour", "cache.t3.micro") * hours,
        # one ALB at the default 1 LCU average
        "Load Balancer": (usd(alb, "hour") + usd(alb, "lcu_hour")) * hours,
        # 2 gateways, and the default 500 GB processed a month
        "NAT Gateway": 2 * usd("nat_gateway", "hour") * hours
        + 500 * usd("nat_gateway", "gb_processed"),
        # 2 NAT Elastic IPs and one ALB node address in each of its 2 subnets
        "Public IPv4": 4 * usd("public_ipv4_hour") * hours,
    }
    assert cost.by_component() == pytest.approx(expected, abs=CENT)
    assert cost.total == pytest.approx(sum(expected.values()), abs=CENT)


def test_report_rows_are_in_the_seed_tables_order(prices: PriceTable) -> None:
    cost = report(today(), prices)
    table_order = ["Compute", "Database", "Cache", "Load Balancer", "NAT Gateway", "Public IPv4"]
    assert [row.component for row in cost.rows] == table_order
    assert list(cost.by_component()) == list(COMPONENTS) == table_order
    assert cost.row("Total") == pytest.approx(201.3651, abs=CENT)
    nat_lines = [
        (line.quantity, line.unit, line.unit_price, line.monthly)
        for line in cost.lines
        if line.component == "NAT Gateway"
    ]
    assert nat_lines == [
        (1460, "NAT-gateway-hour", 0.045, pytest.approx(65.70)),  # 2 x 730 h
        (500, "GB", 0.045, pytest.approx(22.50)),
    ]
    dumped = cost.model_dump(mode="json")
    assert dumped["total"] == pytest.approx(201.3651, abs=CENT)
    assert dumped["prices_as_of"] == "2026-11-01"
    assert [(row["component"], row["monthly"]) for row in dumped["rows"]] == [
        ("Compute", pytest.approx(36.0401, abs=CENT)),
        ("Database", pytest.approx(15.44, abs=CENT)),
        ("Cache", pytest.approx(24.82, abs=CENT)),
        ("Load Balancer", pytest.approx(22.265, abs=CENT)),
        ("NAT Gateway", pytest.approx(88.20, abs=CENT)),
        ("Public IPv4", pytest.approx(14.60, abs=CENT)),
    ]
    with pytest.raises(KeyError, match="Storage"):
        cost.row("Storage")


def test_phase_1_drops_nat_and_costs_less(prices: PriceTable) -> None:
    before, after = report(today(), prices), report(after_phase_1(), prices)
    assert after.row("NAT Gateway") == 0
    assert not [line for line in after.lines if line.component == "NAT Gateway"]
    assert after.total < before.total
    arm = prices.fargate["ARM64"]
    assert after.row("Compute") == pytest.approx(
        2 * (0.5 * arm.vcpu_hour.usd + arm.gb_hour.usd) * HOURS, abs=CENT
    )
    # The NAT EIPs go, the tasks' own public IPs come: 2 ALB nodes + 2 tasks.
    assert after.row("Public IPv4") == pytest.approx(4 * 0.005 * HOURS, abs=CENT)
    assert after.row("Database") == pytest.approx(0.016 * HOURS + 20 * 0.115, abs=CENT)
    assert after.row("Cache") == pytest.approx(2 * 0.016 * HOURS, abs=CENT)


def test_nat_traffic_comes_from_config_usage_and_only_with_a_gateway(prices: PriceTable) -> None:
    quiet = report(today(), prices, nat_processed_gb_per_month=0)
    assert quiet.row("NAT Gateway") == pytest.approx(2 * 0.045 * HOURS, abs=CENT)
    busy = report(today(), prices, nat_processed_gb_per_month=2000)
    assert busy.row("NAT Gateway") == pytest.approx(2 * 0.045 * HOURS + 2000 * 0.045, abs=CENT)
    assert report(after_phase_1(), prices, nat_processed_gb_per_month=2000).row("NAT Gateway") == 0


def test_alb_lcu_average_comes_from_config_usage(prices: PriceTable) -> None:
    cost = report(today(), prices, alb_lcu_average=3)
    assert cost.row("Load Balancer") == pytest.approx((0.0225 + 3 * 0.008) * HOURS, abs=CENT)


def test_asg_of_two_t4g_medium_in_public_subnets(prices: PriceTable) -> None:
    inventory = after_phase_1().model_copy(
        update={"services": [], "autoscaling_groups": [_asg(["t4g.medium"])]}
    )
    cost = report(inventory, prices)
    assert cost.row("Compute") == pytest.approx(49.056, abs=CENT)  # 2 x 0.0336 x 730
    assert cost.row("Public IPv4") == pytest.approx(4 * 0.005 * HOURS, abs=CENT)


def test_asg_without_a_running_instance_is_a_visible_unpriced_line(prices: PriceTable) -> None:
    inventory = after_phase_1().model_copy(
        update={"services": [], "autoscaling_groups": [_asg([])]}
    )
    (line,) = [x for x in report(inventory, prices).lines if x.component == "Compute"]
    assert line.unit_price is None
    assert line.monthly == 0
    assert "unknown type" in line.description


def test_fargate_spot_is_priced_by_base_then_weight(prices: PriceTable) -> None:
    strategy = [
        {"capacityProvider": "FARGATE", "base": 1, "weight": 1},
        {"capacityProvider": "FARGATE_SPOT", "weight": 3},
    ]
    service = _service(desired=5, launch_type=None, capacity_provider_strategy=strategy)
    cost = report(today().model_copy(update={"services": [service]}), prices)

    def task_month(rates_by_arch: dict) -> float:
        rates = rates_by_arch["X86_64"]
        return (0.5 * rates.vcpu_hour.usd + rates.gb_hour.usd) * HOURS

    # 1 base task on FARGATE, then the other 4 split 1:3.
    expected = 2 * task_month(prices.fargate) + 3 * task_month(prices.fargate_spot)
    assert cost.row("Compute") == pytest.approx(expected, abs=CENT)


def test_multi_az_doubles_the_database(prices: PriceTable) -> None:
    single = report(today(), prices).row("Database")
    multi_az = today().model_copy(update={"databases": [_database(multi_az=True)]})
    assert report(multi_az, prices).row("Database") == pytest.approx(2 * single, abs=CENT)


@pytest.mark.parametrize(
    ("change", "missing"),
    [
        ({"databases": [_database(instance_class="db.r6g.large")]}, "db.r6g.large"),
        ({"caches": [_cache("cache.r7g.large")]}, "cache.r7g.large"),
        ({"autoscaling_groups": [_asg(["m7g.large"])]}, "m7g.large"),
        ({"services": [_service(architecture="WINDOWS_ARM")]}, "WINDOWS_ARM"),
    ],
)
def test_a_class_missing_from_the_table_is_a_config_error(
    prices: PriceTable, change: dict, missing: str
) -> None:
    with pytest.raises(ConfigError) as error:
        report(today().model_copy(update=change), prices)
    assert missing in str(error.value)
    assert "us-east-1.yaml" in str(error.value)


def test_an_engine_the_table_does_not_price_is_a_config_error(prices: PriceTable) -> None:
    mysql = today().model_copy(update={"databases": [_database(engine="mysql")]})
    with pytest.raises(ConfigError, match="'mysql'"):
        report(mysql, prices)


def test_prices_of_another_region_are_refused(prices: PriceTable) -> None:
    elsewhere = today().model_copy(update={"region": "eu-west-1"})
    with pytest.raises(ConfigError, match="eu-west-1"):
        report(elsewhere, prices)


def test_missing_pricing_file_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHASEGATE_CONFIG_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match=r"eu-west-1\.yaml.*file not found"):
        load_price_table("eu-west-1")


def _config_dir_with(tmp_path: Path, text: str) -> Path:
    (tmp_path / "pricing").mkdir()
    (tmp_path / "pricing" / "us-east-1.yaml").write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("t3.medium: {usd: 0.0416", "t3.medium: {usd: cheap"), r"ec2_instance_hour\.t3\.medium"),
        (("  lcu_hour:", "  lcu_hours:"), r"application_load_balancer\.lcu_hours"),
        (("region: us-east-1", "region: us-west-2"), r"region: 'us-west-2' does not match"),
        (("gp3: {", "gp2: {"), r"duplicate key 'gp2'"),
        (("as_of: 2026-11-01", "as_of: [2026"), r"YAML syntax error"),
    ],
)
def test_malformed_pricing_file_names_the_file_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: tuple[str, str], expected: str
) -> None:
    text = (REPO_ROOT / "config/pricing/us-east-1.yaml").read_text()
    assert edit[0] in text
    monkeypatch.setenv(
        "PHASEGATE_CONFIG_DIR", str(_config_dir_with(tmp_path, text.replace(edit[0], edit[1], 1)))
    )
    with pytest.raises(ConfigError, match=rf"us-east-1\.yaml: .*{expected}"):
        load_price_table("us-east-1")
