"""regions.expand end to end against the sandbox over HTTP and a real Prefect server, with the
second region us-west-2: what the AWS APIs of us-west-2 and Route 53 show after phase 3, no
mutating call on a second run, a fault on one action in the middle of the sub-steps that
fails the run and a re-run that resumes from the failed sub-step with nothing made twice,
rollback leaving neither region with anything of phase 3's (inventories of both compared
with before), and a hosted zone that does not exist refused while planning.

One sandbox for the module, seeded once; the tests run in order on it, each leaving it as
it was before phase 3 (rollback is part of each).
"""

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import write_environment
from region_inventory import SECONDARY, inventory
from typer.testing import CliRunner

from flows.migration import migration
from flows.phase3 import phase3
from flows.rollback import rollback_phase
from phasegate.aws import AwsClients
from phasegate.checkpoints import checkpoint_storage
from phasegate.cli import app
from phasegate.config import AwsSettings, EnvironmentConfig, parse_environment
from phasegate.errors import PhaseFailed
from phasegate.gates import HealthGate
from phasegate.lifecycle import execute, plan
from phasegate.sandbox.app import is_mutating
from phasegate.sandbox.seed import hosted_zone_name, seed_environment, seed_hosted_zone
from phasegate.sandbox.simulator import WorkloadSimulator
from phasegate.steps import Record, StepContext
from phasegate.terraform.executor import OUTSIDE_TERRAFORM
from tasks.compute import GravitonCompute
from tasks.compute_ec2 import AMI_PARAMETER
from tasks.db_connections import DatabaseConnections
from tasks.region_network import RegionNetwork
from tasks.registry import STEPS

pytestmark = pytest.mark.timeout(600)

RECORD = f"app.{hosted_zone_name('demo')}"
REGION_STEPS = [s for s in STEPS if s.startswith("regions.expand.")]


@dataclass
class World:
    sandbox: str
    clients: AwsClients
    zone: str
    before: dict[str, Any]
    directory: Path

    @property
    def faults(self) -> Path:
        """A faults file of the module's own (none in it): the sandbox's is not the tests'."""
        return self.directory / "faults.json"

    def config(self, name: str, **overrides: Any) -> EnvironmentConfig:
        """An environment file of its own (its own checkpoints) for the seeded `demo`."""
        directory = self.directory / name
        directory.mkdir(exist_ok=True)
        regions = {"secondary": SECONDARY, "hosted_zone": hosted_zone_name("demo"),
                   "record_name": RECORD}  # fmt: skip
        return parse_environment(
            write_environment(directory, "demo", self.sandbox, regions=regions, **overrides)
        )


@pytest.fixture(scope="module")
def world(
    moto_server: str, prefect_api: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """The seeded `demo` (its database on phase 2's tuned parameter group, so the replica
    has one to copy) and its public zone; flows run against the session's Prefect API."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    requests.post(f"{moto_server}/moto-api/reset", timeout=10).raise_for_status()
    requests.delete(f"{moto_server}/_phasegate/faults", timeout=10).raise_for_status()
    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=moto_server))
    seed_environment(clients, "demo", 1)
    zone = seed_hosted_zone(clients, "demo")
    directory = tmp_path_factory.mktemp("regions")
    primary = parse_environment(write_environment(directory, "demo", moto_server))
    execute(DatabaseConnections(StepContext.for_environment(primary)), key="phase 2")
    mp = pytest.MonkeyPatch()
    mp.setenv("PREFECT_API_URL", prefect_api)
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        yield World(moto_server, clients, zone, inventory(clients), directory)
    mp.undo()


def run(config: EnvironmentConfig) -> list[Record]:
    with checkpoint_storage(config):
        return phase3(str(config.source))


def roll_back(config: EnvironmentConfig) -> None:
    with checkpoint_storage(config):
        rollback_phase(str(config.source), 3)


def calls(world: World) -> list[str]:
    answered = requests.get(f"{world.sandbox}/_phasegate/calls", timeout=10).json()
    return [c["action"] for c in answered if is_mutating(c["action"])]


def clear_calls(world: World) -> None:
    requests.delete(f"{world.sandbox}/_phasegate/calls", timeout=10).raise_for_status()


def second_region(world: World) -> dict[str, Any]:
    """What regions.expand should leave in us-west-2 and Route 53, as AWS shows it."""
    c = world.clients
    [replica] = c.client("rds", SECONDARY).describe_db_instances()["DBInstances"]
    rds = c.client("rds", SECONDARY)
    group = replica["DBParameterGroups"][0]["DBParameterGroupName"]
    [redis] = c.client("elasticache", SECONDARY).describe_replication_groups()["ReplicationGroups"]
    ecs = c.client("ecs", SECONDARY)
    [cluster] = ecs.list_clusters()["clusterArns"]
    [service] = ecs.describe_services(
        cluster=cluster, services=ecs.list_services(cluster=cluster)["serviceArns"]
    )["services"]
    task = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
    elbv2 = c.client("elbv2", SECONDARY)
    [alb] = elbv2.describe_load_balancers()["LoadBalancers"]
    [listener] = elbv2.describe_listeners(LoadBalancerArn=alb["LoadBalancerArn"])["Listeners"]
    records = [
        r
        for r in c.route53.list_resource_record_sets(HostedZoneId=world.zone)["ResourceRecordSets"]
        if r.get("Failover")
    ]
    checks = {
        h["Id"]: h["HealthCheckConfig"] for h in c.route53.list_health_checks()["HealthChecks"]
    }
    return {
        "replica": (replica["ReadReplicaSourceDBInstanceIdentifier"], replica["DBInstanceStatus"]),
        "replica_subnets": replica["DBSubnetGroup"]["DBSubnetGroupName"],
        "parameters": {
            p["ParameterName"]: p["ParameterValue"]
            for p in rds.describe_db_parameters(DBParameterGroupName=group)["Parameters"]
        },
        "redis": (redis["CacheNodeType"], len(redis["MemberClusters"]), redis["Status"]),
        "service": (service["runningCount"], service["desiredCount"], service["launchType"]),
        "images": [x["image"] for x in task["containerDefinitions"]],
        "service_public_ip": service["networkConfiguration"]["awsvpcConfiguration"][
            "assignPublicIp"
        ],
        "alb": (alb["Scheme"], listener["Port"], listener["Protocol"]),
        "records": sorted(
            (
                r["Failover"],
                r["AliasTarget"]["DNSName"],
                checks[r["HealthCheckId"]]["ResourcePath"],
                checks[r["HealthCheckId"]]["FullyQualifiedDomainName"],
            )
            for r in records
        ),
    }


def test_phase3_builds_the_second_region_a_rerun_changes_nothing_rollback_clears_it(
    world: World,
) -> None:
    config = world.config("full")
    primary = world.clients.rds.describe_db_instances()["DBInstances"][0]
    primary_group = primary["DBParameterGroups"][0]["DBParameterGroupName"]
    primary_parameters = {
        p["ParameterName"]: p["ParameterValue"]
        for p in world.clients.rds.describe_db_parameters(DBParameterGroupName=primary_group)[
            "Parameters"
        ]
    }
    primary_task = world.clients.ecs.describe_task_definition(taskDefinition="demo-api")
    primary_alb = world.clients.elbv2.describe_load_balancers()["LoadBalancers"][0]

    records = {r.step: r for r in run(config)}

    assert {s: records[s].outcome for s in REGION_STEPS} == dict.fromkeys(REGION_STEPS, "applied")
    for step_id in REGION_STEPS:
        assert set(records[step_id].api_actions) <= set(STEPS[step_id].iam_actions), step_id
    found = second_region(world)
    west_alb = world.clients.client("elbv2", SECONDARY).describe_load_balancers()
    assert found == {
        "replica": (primary["DBInstanceArn"], "available"),
        "replica_subnets": "demo-db",
        "parameters": primary_parameters,
        "redis": ("cache.t3.micro", 2, "available"),
        "service": (2, 2, "FARGATE"),
        "images": [c["image"] for c in primary_task["taskDefinition"]["containerDefinitions"]],
        "service_public_ip": "ENABLED",
        "alb": ("internet-facing", 80, "HTTP"),
        "records": [
            ("PRIMARY", primary_alb["DNSName"], "/health", primary_alb["DNSName"]),
            (
                "SECONDARY",
                west_alb["LoadBalancers"][0]["DNSName"],
                "/health",
                west_alb["LoadBalancers"][0]["DNSName"],
            ),
        ],
    }
    assert primary_parameters, "phase 2's tuned group was copied, not a default one"

    clear_calls(world)
    run(config)
    assert calls(world) == []

    roll_back(config)
    assert inventory(world.clients) == world.before


def test_a_fault_mid_expand_fails_the_run_and_the_rerun_resumes_with_nothing_made_twice(
    world: World,
) -> None:
    config = world.config("fault", phases={"on_step_failure": "stop"})
    fault = {"action": "CreateReplicationGroup", "code": "AccessDenied", "status": 403,
             "times": -1}  # fmt: skip
    requests.post(f"{world.sandbox}/_phasegate/faults", json=fault, timeout=10).raise_for_status()
    try:
        with pytest.raises(PhaseFailed) as failed:
            run(config)
    finally:
        requests.delete(f"{world.sandbox}/_phasegate/faults", timeout=10).raise_for_status()
    assert "regions.expand.cache" in str(failed.value) and "AccessDenied" in str(failed.value)
    assert world.clients.route53.list_health_checks()["HealthChecks"] == []  # dns never ran

    clear_calls(world)
    records = {r.step: r for r in run(config)}

    resumed = Counter(calls(world))
    assert resumed["CreateReplicationGroup"] == 1
    made_before = ["CreateVpc", "CreateLoadBalancer", "CreateDBInstanceReadReplica",
                   "CreateService", "CreateCacheSubnetGroup", "CreateSecurityGroup"]  # fmt: skip
    assert {a: resumed[a] for a in made_before} == dict.fromkeys(made_before, 0)
    assert resumed["POST /2013-04-01/healthcheck"] == 2  # Route 53 is REST: method and path
    assert records["regions.expand.cache"].outcome == "applied"
    after = inventory(world.clients)[SECONDARY]
    assert len(after["replication_groups"]) == 1 and len(after["db_instances"]) == 1
    assert len(after["load_balancers"]) == 1 and len(after["ecs_services"]) == 1
    assert len(after["vpcs"]) == len(world.before[SECONDARY]["vpcs"]) + 1

    roll_back(config)
    assert inventory(world.clients) == world.before


def test_the_gate_after_phase_3_reads_the_standby_as_aws_would_and_fails_a_broken_one(
    world: World,
) -> None:
    """Through the migration flow and its gate, with the simulator publishing both regions:
    the standby gets Route 53's health checks only, so the gate passes on it (it failed when
    the simulator backfilled it an hour of the primary's traffic before it had a task). Then
    its service scaled to 0 answers those checks 503 and the gate fails naming its ALB."""
    config = world.config("gated", gates={"interval_seconds": 2, "count": 3})
    simulator = WorkloadSimulator(lambda: [config], tick_seconds=0.3, faults_file=world.faults)
    simulator.start()
    try:
        with checkpoint_storage(config):
            [outcome] = migration(str(config.source), phases=[3]).phases
    finally:
        simulator.stop()
    assert (outcome.status, outcome.gate) == ("completed", "pass"), outcome.gate_reason
    gate = HealthGate(config).evaluate(sleep=lambda _: None)
    west = {c.name: c for c in gate.rounds[-1].checks if c.resource.endswith(f"({SECONDARY})")}
    assert {"alb-5xx-ratio", "alb-elb-5xx-ratio", "healthy-hosts", "rds-replica-lag"} <= set(west)
    assert "rds-connections" not in west  # an idle standby's replica has no client
    assert west["alb-elb-5xx-ratio"].detail.startswith("0 of ")

    ecs = world.clients.client("ecs", SECONDARY)
    [cluster] = ecs.list_clusters()["clusterArns"]
    [service] = ecs.list_services(cluster=cluster)["serviceArns"]
    ecs.update_service(cluster=cluster, service=service, desiredCount=0)
    later = datetime.now(UTC) + timedelta(minutes=10)  # past every minute published above
    broken = WorkloadSimulator(lambda: [config], backfill_minutes=1, faults_file=world.faults)
    for minute in range(config.gates.lookback_minutes, -1, -1):
        broken.tick(later - timedelta(minutes=minute))
    failed = HealthGate(config).evaluate(now=later, sleep=lambda _: None)

    assert failed.verdict == "fail"
    assert f"alb-elb-5xx-ratio on demo-alb ({SECONDARY})" in failed.reason, failed.reason
    assert {(c.name, c.resource) for c in failed.rounds[-1].checks if c.status == "fail"} == {
        ("alb-elb-5xx-ratio", f"demo-alb ({SECONDARY})"),
        ("healthy-hosts", f"demo-app ({SECONDARY})"),
    }  # the primary and the rest of the standby are fine

    roll_back(config)
    assert inventory(world.clients) == world.before


def test_a_hosted_zone_that_does_not_exist_is_refused_while_planning(world: World) -> None:
    config = world.config("nozone")
    path = write_environment(
        config.source.parent, "demo", world.sandbox,
        regions={"secondary": SECONDARY, "hosted_zone": "nowhere.example.", "record_name": RECORD},
    )  # fmt: skip
    clear_calls(world)

    result = CliRunner().invoke(app, ["plan", str(path), "--phase", "3"])

    assert result.exit_code == 2, result.output
    assert "regions.hosted_zone" in result.output and "nowhere.example." in result.output
    assert "Traceback" not in result.output
    assert calls(world) == []


def test_regions_expand_is_opt_in(world: World) -> None:
    config = parse_environment(write_environment(world.directory, "demo", world.sandbox))
    ctx = StepContext.for_environment(config)
    assert [plan(STEPS[s](ctx)) for s in REGION_STEPS] == [None] * len(REGION_STEPS)


class NetworkWithoutTerraformForm(RegionNetwork):
    """A step as a stranger might add it: no `terraform_decisions`, so no Terraform form."""

    def terraform_decisions(self) -> dict[str, Any]:
        return {}


def test_under_the_terraform_executor_a_step_without_a_terraform_form_says_it_acts_outside(
    world: World,
) -> None:
    """It acts with the API, and the approver is told the stack will not know of it."""
    config = world.config("outside")
    via_terraform = config.model_copy(
        update={"executor": config.executor.model_copy(update={"via": "terraform"})}
    )
    change = plan(NetworkWithoutTerraformForm(StepContext.for_environment(via_terraform)))
    assert change is not None and change.actions[-1] == OUTSIDE_TERRAFORM
    api = plan(NetworkWithoutTerraformForm(StepContext.for_environment(config)))
    assert api is not None and OUTSIDE_TERRAFORM not in api.actions
    assert api.digest() == change.digest()  # the note never changes what is approved


def test_on_the_ec2_target_the_group_and_its_launch_template_are_copied(world: World) -> None:
    """Last: it moves the primary to the EC2 target (phase 1's apply) and leaves it there."""
    config = world.config("ec2", targets={"compute": "ec2-asg-graviton"})
    ctx = StepContext.for_environment(config)
    graviton = GravitonCompute(ctx)
    graviton.apply(graviton.plan(graviton.observe()))
    [primary] = world.clients.autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
    west_before = inventory(world.clients)[SECONDARY]
    steps = [
        STEPS[s](ctx) for s in REGION_STEPS if s.split(".")[-1] in ("network", "alb", "compute")
    ]

    records = [execute(step, key="phase 3") for step in steps]

    for step, record in zip(steps, records, strict=True):
        assert set(record.api_actions) <= set(step.iam_actions), step.id
    c = world.clients
    [group] = c.client("autoscaling", SECONDARY).describe_auto_scaling_groups()["AutoScalingGroups"]
    [target] = c.client("elbv2", SECONDARY).describe_target_groups()["TargetGroups"]
    ami = c.client("ssm", SECONDARY).get_parameter(Name=AMI_PARAMETER)["Parameter"]["Value"]
    [version] = c.client("ec2", SECONDARY).describe_launch_template_versions(
        LaunchTemplateName=primary["LaunchTemplate"]["LaunchTemplateName"], Versions=["$Latest"]
    )["LaunchTemplateVersions"]
    data = version["LaunchTemplateData"]
    [app] = [
        g["GroupId"]
        for g in c.client("ec2", SECONDARY).describe_security_groups()["SecurityGroups"]
        if g["GroupName"] == "demo-app"
    ]
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (
        primary["MinSize"], primary["MaxSize"], primary["DesiredCapacity"],
    )  # fmt: skip
    assert group["TargetGroupARNs"] == [target["TargetGroupArn"]]
    assert target["TargetType"] == "instance"
    assert (data["ImageId"], data["InstanceType"]) == (ami, "t4g.medium")
    assert [nic["Groups"] for nic in data["NetworkInterfaces"]] == [[app]]
    assert [plan(step) for step in steps] == [None, None, None]

    for step, record in reversed(list(zip(steps, records, strict=True))):
        step.rollback(record)
        step.verify_rollback(record)
    assert inventory(world.clients)[SECONDARY] == west_before
