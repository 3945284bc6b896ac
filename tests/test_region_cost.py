"""The second region's cost, against the sandbox over HTTP: what regions.expand's plans quote
(a mirror of the primary priced with us-west-2's table) and what `phasegate cost` shows once
resources tagged for the second region exist there (rows of their own)."""

import json
from pathlib import Path

import pytest
from conftest import write_environment
from typer.testing import CliRunner

from phasegate.aws import AwsClients
from phasegate.cli import app
from phasegate.config import AwsSettings, EnvironmentConfig, parse_environment
from phasegate.cost import load_price_table
from phasegate.errors import ConfigError
from phasegate.inventory import discover
from phasegate.region_cost import SECONDARY_PARTS, mirror_inventory, monthly_cost_of_secondary
from phasegate.render import migration_markdown
from phasegate.report import MigrationReport, PhaseOutcome

HOURS = 730
CENT = 0.01
REGIONS = {"secondary": "us-west-2", "hosted_zone": "example.com.", "record_name": "api"}
SECONDARY_TAGS = [
    {"Key": "Environment", "Value": "demo"},
    {"Key": "PhasegateRole", "Value": "secondary"},
]


@pytest.fixture
def two_regions(seeded: EnvironmentConfig, sandbox: str, tmp_path: Path) -> Path:
    return write_environment(
        tmp_path, "demo", sandbox, regions=REGIONS, usage={"replication_gb_per_month": 30}
    )


def test_the_plan_prices_each_part_with_the_second_regions_table(two_regions: Path) -> None:
    config = parse_environment(two_regions)
    primary = discover(config)
    west = load_price_table("us-west-2")
    parts = {
        part: monthly_cost_of_secondary(config, primary, [part])[0] for part in SECONDARY_PARTS
    }
    task_hour = 0.5 * west.fargate["X86_64"].vcpu_hour.usd + west.fargate["X86_64"].gb_hour.usd
    ipv4 = west.public_ipv4_hour.usd * HOURS
    assert parts == pytest.approx(
        {
            "network": 0.0,  # public subnets only: no NAT
            # the replica: db.t3.micro Single-AZ and 20 GB gp3, plus 30 GB of its stream
            "database": 0.018 * HOURS + 20 * 0.115 + 30 * 0.02,
            "cache": 2 * 0.017 * HOURS,
            # 2 on-demand tasks with public IPs (no NAT to reach the registry through)
            "compute": 2 * task_hour * HOURS + 2 * ipv4,
            "load_balancer": (0.0225 + 0.008) * HOURS + 2 * ipv4,
            "dns": 2 * 0.50,  # a health check per failover record
        },
        abs=CENT,
    )
    total, note = monthly_cost_of_secondary(config, primary)
    assert total == pytest.approx(sum(parts.values()), abs=CENT)
    assert total > 90  # a standby region is not free
    assert note == "us-west-2 prices as of 2026-11-27; 30 GB/month replication at $0.02/GB"

    unset = config.model_copy(
        update={"usage": config.usage.model_copy(update={"replication_gb_per_month": None})}
    )
    usd, note = monthly_cost_of_secondary(unset, primary, ["database"])
    assert usd == pytest.approx(parts["database"] - 0.60, abs=CENT)
    assert "replication traffic not priced" in note
    assert "usage.replication_gb_per_month" in note


def test_without_a_second_region_the_plan_is_refused(seeded: EnvironmentConfig) -> None:
    with pytest.raises(ConfigError, match=r"regions\.secondary is not set"):
        monthly_cost_of_secondary(seeded, discover(seeded), ["database"])


def _make_secondary(sandbox: str, primary_db_arn: str) -> None:
    """What regions.expand leaves in us-west-2, made directly: a replica, Redis, an ALB, all
    tagged; and one untagged database that must not be counted."""
    west = AwsClients(AwsSettings(region="us-west-2", endpoint_url=sandbox))
    ec2 = west.ec2
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    ec2.create_tags(Resources=[vpc], Tags=SECONDARY_TAGS)
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24", AvailabilityZone=az)["Subnet"][
            "SubnetId"
        ]
        for i, az in enumerate(["us-west-2a", "us-west-2b"])
    ]
    alb = west.elbv2.create_load_balancer(
        Name="demo-alb-west", Subnets=subnets, Scheme="internet-facing", Tags=SECONDARY_TAGS
    )["LoadBalancers"][0]["LoadBalancerArn"]
    group = west.elbv2.create_target_group(
        Name="demo-app-west", Protocol="HTTP", Port=8000, VpcId=vpc, TargetType="ip"
    )["TargetGroups"][0]["TargetGroupArn"]
    west.elbv2.create_listener(
        LoadBalancerArn=alb,
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": group}],
    )
    west.rds.create_db_instance_read_replica(
        DBInstanceIdentifier="demo-db-west",
        SourceDBInstanceIdentifier=primary_db_arn,
        DBInstanceClass="db.t3.micro",
        Tags=SECONDARY_TAGS,
    )
    west.rds.create_db_instance(
        DBInstanceIdentifier="someone-elses-db",
        DBInstanceClass="db.t3.large",
        Engine="postgres",
        AllocatedStorage=100,
        MasterUsername="x",
        MasterUserPassword="not-ours-password",
        Tags=[{"Key": "Environment", "Value": "demo"}],  # no PhasegateRole: not the standby
    )
    route53 = AwsClients(AwsSettings(region="us-east-1", endpoint_url=sandbox)).route53
    for name in ("primary", "secondary", "someone-elses"):
        check = route53.create_health_check(
            CallerReference=name,
            HealthCheckConfig={"Type": "HTTP", "FullyQualifiedDomainName": f"{name}.example.com"},
        )["HealthCheck"]["Id"]
        tags = SECONDARY_TAGS if name != "someone-elses" else SECONDARY_TAGS[:1]
        route53.change_tags_for_resource(ResourceType="healthcheck", ResourceId=check, AddTags=tags)
    west.elasticache.create_replication_group(
        ReplicationGroupId="demo-redis-west",
        ReplicationGroupDescription="standby",
        Engine="redis",
        CacheNodeType="cache.t4g.micro",
        NumNodeGroups=1,
        ReplicasPerNodeGroup=0,
        Tags=SECONDARY_TAGS,
    )


def test_cost_shows_the_second_region_as_its_own_rows(two_regions: Path, sandbox: str) -> None:
    config = parse_environment(two_regions)
    before = json.loads(CliRunner().invoke(app, ["cost", str(two_regions), "--json"]).stdout)
    [primary_db] = discover(config).databases
    _make_secondary(sandbox, primary_db.arn)

    result = CliRunner().invoke(app, ["cost", str(two_regions), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    west = {r["component"]: r for r in report["rows"] if r["region"] == "us-west-2"}
    primary = [r for r in report["rows"] if r["region"] is None]
    assert [r["monthly"] for r in primary] == [r["monthly"] for r in before["rows"][:6]]
    assert west["Database"]["monthly"] == pytest.approx(
        0.018 * HOURS + 20 * 0.115 + 30 * 0.02, abs=CENT
    )  # the replica only, and its stream; the untagged db.t3.large is not the standby's
    assert west["Cache"]["monthly"] == pytest.approx(0.016 * HOURS, abs=CENT)
    # the ALB, and the two failover records' health checks tagged for the second region
    assert west["Load Balancer"]["monthly"] == pytest.approx(
        (0.0225 + 0.008) * HOURS + 2 * 0.50, abs=CENT
    )
    assert west["NAT Gateway"]["monthly"] == 0
    added = sum(r["monthly"] for r in west.values())
    assert report["total"] == pytest.approx(before["total"] + added, abs=CENT)
    assert "us-west-2 prices as of 2026-11-27" in report["notes"][0]

    table = CliRunner().invoke(app, ["cost", str(two_regions)], env={"COLUMNS": "200"})
    assert "Database (us-west-2)" in table.stdout
    inventory = CliRunner().invoke(app, ["inventory", str(two_regions), "--json"])
    found = json.loads(inventory.stdout)["secondary"]
    assert [d["identifier"] for d in found["databases"]] == ["demo-db-west"]
    compared = CliRunner().invoke(app, ["compare", str(two_regions)], env={"COLUMNS": "250"})
    assert compared.exit_code == 0, compared.output
    assert "Cache (us-west-2)" in compared.stdout

    # Promoted (a failover): a standalone database streams nothing across regions any more.
    rds = AwsClients(AwsSettings(region="us-west-2", endpoint_url=sandbox)).rds
    rds.promote_read_replica(DBInstanceIdentifier="demo-db-west")
    after = json.loads(CliRunner().invoke(app, ["cost", str(two_regions), "--json"]).stdout)
    [database] = [
        r for r in after["rows"] if r["region"] == "us-west-2" and r["component"] == "Database"
    ]
    assert database["monthly"] == pytest.approx(west["Database"]["monthly"] - 0.60, abs=CENT)


def test_the_before_after_table_shows_rows_a_phase_adds() -> None:
    before = {"Compute": 36.04, "Database": 15.44, "Total": 51.48}
    after = {"Compute": 36.04, "Database": 15.44, "Database (us-west-2)": 15.44, "Total": 66.92}
    report = MigrationReport(
        environment="demo",
        phases=[PhaseOutcome(phase=3, status="completed", cost_before=before, cost_after=after)],
    )
    lines = migration_markdown(report).splitlines()
    assert "| Database (us-west-2) | $0.00 | $15.44 |" in lines
    names = [line.split("|")[1].strip() for line in lines if line.startswith("| ")][1:]
    assert names[:4] == ["Compute", "Database", "Database (us-west-2)", "Total"]


def test_the_mirror_runs_fargate_on_demand_and_leaves_ec2_services_to_their_group(
    seeded: EnvironmentConfig,
) -> None:
    [service] = discover(seeded).services
    spot = service.model_copy(
        update={
            "launch_type": None,
            "capacity_provider_strategy": [
                {"capacityProvider": "FARGATE", "base": 1, "weight": 1},
                {"capacityProvider": "FARGATE_SPOT", "weight": 3},
            ],
        }
    )
    on_ec2 = service.model_copy(update={"launch_type": "EC2", "assign_public_ip": False})
    primary = discover(seeded).model_copy(update={"services": [spot, on_ec2]})
    mirrored = mirror_inventory(primary, "us-west-2", ["compute"])
    [fargate, ec2] = mirrored.services
    assert (fargate.launch_type, fargate.capacity_provider_strategy) == ("FARGATE", [])
    assert fargate.assign_public_ip  # public subnets only: no NAT to reach the registry
    assert (ec2.launch_type, ec2.assign_public_ip) == ("EC2", False)
    assert mirrored.databases == mirrored.caches == mirrored.load_balancers == []
