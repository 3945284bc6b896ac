"""nat.assess and nat.remove against the seeded sandbox, through the real Step lifecycle."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from phasegate.aws import recording_calls
from phasegate.config import EnvironmentConfig
from phasegate.cost import load_price_table, price_inventory
from phasegate.errors import ConfigError, PhasegateError
from phasegate.inventory import Inventory, discover
from phasegate.lifecycle import StepFailed, execute, plan, undo
from phasegate.sandbox.app import is_mutating
from phasegate.steps import StepContext
from tasks import nat_terraform
from tasks.nat_assess import NatAssessment, render_markdown
from tasks.nat_remove import NatRemoval

# botocore signing names that differ from the IAM service prefix
IAM_PREFIX = {"monitoring": "cloudwatch"}


def clear_calls(config: EnvironmentConfig) -> None:
    requests.delete(f"{config.aws.endpoint_url}/_phasegate/calls", timeout=10).raise_for_status()


def mutating_calls(config: EnvironmentConfig) -> list[str]:
    calls = requests.get(f"{config.aws.endpoint_url}/_phasegate/calls", timeout=10).json()
    return [f"{c['service']}:{c['action']}" for c in calls if is_mutating(c["action"])]


def normalised(inventory: Inventory) -> dict[str, Any]:
    """The inventory with the ids a rollback must change replaced by what they stand for.

    A restored NAT gateway has a new id, a new Elastic IP (allocation id, public IP) and the
    routes point at the new id; each is named by the subnet its gateway lives in instead.
    """
    data = inventory.model_dump()
    for vpc in data["vpcs"]:
        subnet_of = {n["id"]: n["subnet_id"] for n in vpc["nat_gateways"]}
        for nat in vpc["nat_gateways"]:
            nat["id"] = f"nat@{nat['subnet_id']}"
            nat["allocation_ids"] = len(nat["allocation_ids"])
            nat["public_ips"] = len(nat["public_ips"])
        vpc["nat_gateways"].sort(key=lambda n: n["subnet_id"])
        for table in vpc["route_tables"]:
            for route in table["routes"]:
                if route["target_type"] == "nat":
                    route["target_id"] = f"nat@{subnet_of.get(route['target_id'], 'unknown')}"
        vpc["route_tables"].sort(key=lambda t: t["id"])
    return data


@pytest.fixture
def ctx(seeded: EnvironmentConfig) -> StepContext:
    return StepContext.for_environment(seeded)


def private_subnets(inventory: Inventory) -> list[str]:
    return sorted(s.id for s in inventory.subnets if not s.public)


# --------------------------------------------------------------------------- nat.assess


def test_assessment_lists_nat_routes_workloads_and_unknown_traffic(
    seeded: EnvironmentConfig, ctx: StepContext
) -> None:
    inventory = discover(seeded)
    clear_calls(seeded)
    record = execute(NatAssessment(ctx), key="test")
    assert mutating_calls(seeded) == []

    report = record.after
    assert record.change is not None and record.change.actions == []
    assert record.change.monthly_cost_delta == 0
    assert record.change.before == record.change.desired == report
    assert len(report["nat_gateways"]) == 2
    [vpc] = inventory.vpcs
    tables = {t.id: t for t in vpc.route_tables}
    for nat in report["nat_gateways"]:
        assert nat["bytes_out_to_destination"] == "unknown"
        [table] = nat["route_tables"]
        assert tables[table["id"]].default_route().target_id == nat["id"]
        [subnet] = nat["private_subnets"]
        assert table["subnet_ids"] == [subnet]
        assert subnet in private_subnets(inventory)
        assert [(w["kind"], w["id"]) for w in nat["workloads"]] == [
            ("ecs-service", "demo-cluster/demo-api")
        ]
    assert {n["subnet_id"] for n in report["nat_gateways"]} == {
        s.id for s in inventory.subnets if s.public
    }
    assert report["blockers"] == []
    [workload] = report["workloads"]
    assert workload["movable"] is True
    endpoints = {e["service"]: e for e in report["vpc_endpoints"]}
    assert endpoints["com.amazonaws.us-east-1.s3"]["present"] is False
    assert endpoints["com.amazonaws.us-east-1.s3"]["needed"].startswith("yes")
    assert "only if" in endpoints["com.amazonaws.us-east-1.ecr.dkr"]["needed"]
    assert report["monthly_nat_cost"] > 60


def test_assessment_traffic_is_the_sum_of_bytes_and_renders(
    seeded: EnvironmentConfig, ctx: StepContext
) -> None:
    inventory = discover(seeded)
    busy, quiet = sorted(n.id for n in inventory.nat_gateways)
    now = datetime.now(UTC)
    ctx.clients.cloudwatch.put_metric_data(
        Namespace="AWS/NATGateway",
        MetricData=[
            {
                "MetricName": "BytesOutToDestination",
                "Dimensions": [{"Name": "NatGatewayId", "Value": busy}],
                "Timestamp": now - ago,
                "Value": value,
                "Unit": "Bytes",
            }
            for ago, value in (
                (timedelta(hours=1), 1_500_000.0),
                (timedelta(days=2), 2_500_000.0),
                (timedelta(days=6), 1_000.0),
                (timedelta(days=9), 7.0e9),  # outside the 7-day window
            )
        ],
    )
    step = NatAssessment(ctx)
    report = step.assess()
    traffic = {n["id"]: n["bytes_out_to_destination"] for n in report["nat_gateways"]}
    assert traffic == {busy: 4_001_000, quiet: "unknown"}

    markdown = NatAssessment.render_markdown(report)
    assert markdown.startswith("# NAT gateway assessment: demo\n")
    rows = {line.split(" | ")[0][2:]: line for line in markdown.splitlines() if "| nat-" in line}
    assert set(rows) == {busy, quiet}
    assert "| 3.8 MB |" in rows[busy]  # 4,001,000 bytes
    assert "| unknown (no data) |" in rows[quiet]
    assert "ecs-service demo-cluster/demo-api" in markdown
    assert "com.amazonaws.us-east-1.s3" in markdown
    # outside a Prefect run apply publishes nothing and just returns the assessment
    change = plan(step)
    assert change is not None
    assert step.apply(change) == report | {"generated_at": change.desired["generated_at"]}


def test_assessment_markdown_of_a_hand_built_report() -> None:
    """Every field in its place, bytes in binary units, no data never shown as 0."""
    nat = {"subnet_id": "subnet-pub-a", "availability_zone": "us-east-1a"}
    report = {
        "environment": "acme",
        "region": "us-east-1",
        "generated_at": "2026-01-02T03:04:05+00:00",
        "traffic_days": 7,
        "monthly_nat_cost": 1234.5,
        "nat_gateways": [
            {
                **nat, "id": "nat-busy", "bytes_out_to_destination": 4_001_000,
                "route_tables": [{"id": "rtb-a"}, {"id": "rtb-c"}],
                "private_subnets": ["subnet-priv-a", "subnet-priv-c"],
                "workloads": [
                    {"kind": "ecs-service", "id": "acme/api"},
                    {"kind": "ec2-instance", "id": "i-1"},
                ],
            },
            {
                **nat, "id": "nat-tiny", "bytes_out_to_destination": 512,
                "route_tables": [{"id": "rtb-b"}], "private_subnets": ["subnet-priv-b"],
                "workloads": [],
            },
            {
                "id": "nat-quiet", "subnet_id": "subnet-pub-b", "availability_zone": "us-east-1b",
                "bytes_out_to_destination": "unknown", "route_tables": [], "private_subnets": [],
                "workloads": [],
            },
        ],
        "workloads": [
            {"kind": "ecs-service", "id": "acme/api", "movable": True, "note": "public IP"},
            {"kind": "ec2-instance", "id": "i-1", "movable": False, "note": "no public IP"},
        ],
        "vpc_endpoints": [
            {"vpc_id": "vpc-1", "service": "com.amazonaws.us-east-1.s3", "type": "Gateway",
             "needed": "yes: image layers", "present": False},
            {"vpc_id": "vpc-1", "service": "com.amazonaws.us-east-1.ecr.dkr",
             "type": "Interface", "needed": "only if private", "present": True},
        ],
        "notes": ["first note", "second note"],
    }  # fmt: skip
    assert render_markdown(report) == (
        "# NAT gateway assessment: acme\n"
        "\n"
        "Region us-east-1, generated 2026-01-02T03:04:05+00:00. Traffic is AWS/NATGateway "
        "BytesOutToDestination, Sum over the last 7 days; no data is shown as unknown, never "
        "as 0.\n"
        "\n"
        "NAT gateways cost about $1,234.50 a month here.\n"
        "\n"
        "| NAT gateway | subnet (AZ) | traffic | route tables | private subnets | workloads |\n"
        "|---|---|---|---|---|---|\n"
        "| nat-busy | subnet-pub-a (us-east-1a) | 3.8 MB | rtb-a, rtb-c "
        "| subnet-priv-a, subnet-priv-c | ecs-service acme/api, ec2-instance i-1 |\n"
        "| nat-tiny | subnet-pub-a (us-east-1a) | 512 B | rtb-b | subnet-priv-b | none |\n"
        "| nat-quiet | subnet-pub-b (us-east-1b) | unknown (no data) | none | none | none |\n"
        "\n"
        "## Workloads that lose egress without a NAT\n"
        "\n"
        "- ecs-service `acme/api` (movable): public IP\n"
        "- ec2-instance `i-1` (BLOCKS nat.remove): no public IP\n"
        "\n"
        "## VPC endpoints needed without a NAT\n"
        "\n"
        "| VPC | endpoint | type | needed | present |\n"
        "|---|---|---|---|---|\n"
        "| vpc-1 | com.amazonaws.us-east-1.s3 | Gateway | yes: image layers | no |\n"
        "| vpc-1 | com.amazonaws.us-east-1.ecr.dkr | Interface | only if private | yes |\n"
        "\n"
        "> first note\n"
        "> second note\n"
    )

    empty = render_markdown(report | {"nat_gateways": [], "workloads": [], "notes": []})
    assert "|---|---|---|---|---|---|\n| none | | | | | |\n" in empty
    assert "## Workloads that lose egress without a NAT\n\n- none\n" in empty


# --------------------------------------------------------------------------- nat.remove


def test_plan_is_read_only_and_prices_the_change(
    seeded: EnvironmentConfig, ctx: StepContext
) -> None:
    clear_calls(seeded)
    change = plan(NatRemoval(ctx))
    assert mutating_calls(seeded) == []

    assert change is not None
    assert change.monthly_cost_delta < -60  # two NAT gateways, less two task public IPs
    assert change.reversibility.restart_needed and change.reversibility.rollback_possible
    assert change.reversibility.expected_disruption.startswith("rolling replacement")
    before = change.before
    assert len(before["nat_gateways"]) == 2
    assert all(n["subnet_id"] and n["allocation_ids"] and n["tags"] for n in before["nat_gateways"])
    assert len(before["nat_routes"]) == 2
    [svc] = before["services"]
    assert svc["assign_public_ip"] is False and len(svc["subnets"]) == 2
    [move] = change.desired["services"]
    assert move["security_groups"] == svc["security_groups"]  # the app SG admits only the ALB
    assert before["s3_endpoints"] == {before["vpcs"][0]: None}
    assert any(a.startswith("ec2: release Elastic IP") for a in change.actions)


def test_under_the_terraform_executor_nat_remove_goes_through_the_stack(
    seeded: EnvironmentConfig,
) -> None:
    """nat.remove declares its Terraform decisions, so it never acts behind the stack: without
    terraform.dir it is bad input naming the environment, the step and the field."""
    via_terraform = seeded.model_copy(
        update={"executor": seeded.executor.model_copy(update={"via": "terraform"})}
    )
    with pytest.raises(ConfigError, match=r"^demo: step nat.remove: .*terraform.dir is not set"):
        plan(NatRemoval(StepContext.for_environment(via_terraform)))


def test_through_terraform_a_data_store_admitting_private_cidrs_blocks_the_removal(
    ctx: StepContext,
) -> None:
    """The seed's data group admits the private subnets' CIDRs only (the common Terraform
    pattern): the API executor adds the app's group; through Terraform that is the stack's
    job, so the step is blocked, naming each data store, group, port and the app's group."""
    change = plan(NatRemoval(ctx))
    assert change is not None and not change.blockers
    [move] = change.desired["services"]
    [app] = move["security_groups"]
    found = nat_terraform.blockers(ctx.clients, change)
    assert len(found) == 2
    [group_id] = change.desired["data_store_groups"]  # RDS and Redis share the seed's group
    for port in (5432, 6379):
        [line] = [b for b in found if f"admits tcp {port} from the private subnets only" in b]
        assert line.startswith(f"RDS demo-db: security group {group_id} admits")
        assert "ECS service demo-cluster/demo-api moved to the public subnets" in line
        assert f"admit the app's security group {app} there in the stack" in line

    admit_app = [
        {"IpProtocol": "tcp", "FromPort": p, "ToPort": p, "UserIdGroupPairs": [{"GroupId": app}]}
        for p in (5432, 6379)
    ]
    ctx.clients.ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=admit_app)
    assert nat_terraform.blockers(ctx.clients, plan(NatRemoval(ctx))) == []


def test_remove_nat_gateways_then_rerun_changes_nothing(
    seeded: EnvironmentConfig, ctx: StepContext
) -> None:
    seeded_inventory = discover(seeded)
    allocations = [a for n in seeded_inventory.nat_gateways for a in n.allocation_ids]
    record = execute(NatRemoval(ctx), key="test")
    assert record.outcome == "applied"

    inventory = discover(seeded)
    ec2 = ctx.clients.ec2
    assert inventory.nat_gateways == []
    assert (
        ec2.describe_addresses(Filters=[{"Name": "allocation-id", "Values": allocations}])[
            "Addresses"
        ]
        == []
    )
    [vpc] = inventory.vpcs
    assert all(r.target_type != "nat" for t in vpc.route_tables for r in t.routes), vpc.route_tables
    endpoints = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc.id]}])[
        "VpcEndpoints"
    ]
    assert [(e["ServiceName"], e["VpcEndpointType"]) for e in endpoints] == [
        ("com.amazonaws.us-east-1.s3", "Gateway")
    ]
    assert sorted(endpoints[0]["RouteTableIds"]) == sorted(t.id for t in vpc.route_tables)
    [service] = inventory.services
    public = sorted(s.id for s in vpc.subnets if s.public)
    assert service.subnets == public and service.assign_public_ip
    assert service.running == service.desired == 2
    assert service.security_groups == seeded_inventory.services[0].security_groups
    report = price_inventory(inventory, seeded, load_price_table("us-east-1"))
    assert report.row("NAT Gateway") == 0

    clear_calls(seeded)
    again = execute(NatRemoval(ctx), key="test")
    assert again.outcome == "unchanged"
    assert mutating_calls(seeded) == []


def test_refuses_when_an_unmanaged_instance_would_lose_egress(
    seeded: EnvironmentConfig, ctx: StepContext
) -> None:
    ec2 = ctx.clients.ec2
    subnet = private_subnets(discover(seeded))[0]
    image = ec2.describe_images(Filters=[{"Name": "architecture", "Values": ["x86_64"]}])["Images"][
        0
    ]["ImageId"]
    instance = ec2.run_instances(
        ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1, SubnetId=subnet
    )["Instances"][0]["InstanceId"]
    before = discover(seeded)
    clear_calls(seeded)

    with pytest.raises(StepFailed) as refused:
        execute(NatRemoval(ctx), key="test")
    message = str(refused.value)
    assert f"(ec2-instance {instance}, " in message
    assert f"in private subnet {subnet} would lose egress" in message
    assert "phasegate does not move it" in message
    assert mutating_calls(seeded) == []
    assert discover(seeded) == before

    # the assessment reports the same instance as a blocker
    report = NatAssessment(ctx).assess()
    assert any(instance in b for b in report["blockers"])
    [nat] = [n for n in report["nat_gateways"] if subnet in n["private_subnets"]]
    [eni] = [w for w in report["workloads"] if w["kind"] == "ec2-instance"]
    assert instance in eni["note"]
    assert ("ec2-instance", eni["id"]) in {(w["kind"], w["id"]) for w in nat["workloads"]}


def test_undo_returns_the_environment_to_its_seeded_shape(
    seeded: EnvironmentConfig, ctx: StepContext
) -> None:
    seeded_inventory = discover(seeded)
    step = NatRemoval(ctx)
    record = execute(step, key="test")
    assert discover(seeded).nat_gateways == []

    undo(step)
    restored = discover(seeded)
    assert normalised(restored) == normalised(seeded_inventory)
    assert len(restored.nat_gateways) == 2
    assert not {a for n in restored.nat_gateways for a in n.allocation_ids} & {
        a for n in seeded_inventory.nat_gateways for a in n.allocation_ids
    }
    # no address leaked: exactly one EIP per restored NAT gateway
    addresses = ctx.clients.ec2.describe_addresses()["Addresses"]
    assert len(addresses) == 2
    # undo again is safe and changes nothing
    clear_calls(seeded)
    step.rollback(record)
    assert mutating_calls(seeded) == []
    # and the step can run again from the restored state
    assert plan(step) is not None


def test_apply_twice_makes_no_duplicates(seeded: EnvironmentConfig, ctx: StepContext) -> None:
    step = NatRemoval(ctx)
    change = plan(step)
    assert change is not None
    first = step.apply(change)
    second = step.apply(change)
    assert first["s3_endpoints"] == second["s3_endpoints"]
    assert second["released_allocation_ids"] == first["released_allocation_ids"]
    vpc_id = change.before["vpcs"][0]
    endpoints = ctx.clients.ec2.describe_vpc_endpoints(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}]
    )["VpcEndpoints"]
    assert len([e for e in endpoints if e["State"].lower() != "deleted"]) == 1
    assert ctx.clients.ec2.describe_addresses()["Addresses"] == []


def test_a_broader_security_group_is_replaced_by_an_alb_only_one_and_undone(
    seeded: EnvironmentConfig, ctx: StepContext
) -> None:
    ec2 = ctx.clients.ec2
    seeded_inventory = discover(seeded)
    [service] = seeded_inventory.services
    [app_sg] = service.security_groups
    [alb] = seeded_inventory.load_balancers
    ec2.authorize_security_group_ingress(
        GroupId=app_sg,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
        ],
    )
    step = NatRemoval(ctx)
    execute(step, key="test")

    [moved] = discover(seeded).services
    [new_sg] = moved.security_groups
    assert new_sg != app_sg
    group = ec2.describe_security_groups(GroupIds=[new_sg])["SecurityGroups"][0]
    assert group["GroupName"] == "demo-app-public"
    assert {"Key": "Environment", "Value": "demo"} in group["Tags"]
    [perm] = group["IpPermissions"]
    assert (perm["FromPort"], perm["ToPort"], perm["IpRanges"]) == (8000, 8000, [])
    assert [p["GroupId"] for p in perm["UserIdGroupPairs"]] == alb.security_groups

    undo(step)
    [back] = discover(seeded).services
    assert back.security_groups == [app_sg] and back.subnets == service.subnets
    assert (
        ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": [new_sg]}])[
            "SecurityGroups"
        ]
        == []
    )


def test_iam_actions_cover_every_call_made(seeded: EnvironmentConfig, ctx: StepContext) -> None:
    for step_class in (NatAssessment, NatRemoval):
        step = step_class(ctx)
        record = execute(step, key="test")
        with recording_calls() as rollback_calls:
            undo(step)
        used = {
            f"{IAM_PREFIX.get(s, s)}:{op}"
            for s, op in (a.split(":") for a in [*record.api_actions, *rollback_calls])
        }
        assert used <= set(step.iam_actions), used - set(step.iam_actions)
        assert step.phase == 1 and step.title and step.__doc__


@pytest.mark.usefixtures("prefect_client_env")
def test_assessment_is_published_as_a_markdown_artifact_inside_a_prefect_run(
    seeded: EnvironmentConfig, ctx: StepContext
) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    @flow
    def assess() -> dict[str, Any]:
        return execute(NatAssessment(ctx), key="test").after

    state = assess(return_state=True)
    report = state.result()
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    assert (artifact.key, artifact.type) == ("nat-assessment-demo", "markdown")
    assert artifact.data.startswith("# NAT gateway assessment: demo\n")
    for nat in report["nat_gateways"]:  # one table row per gateway, its traffic unknown here
        assert f"| {nat['id']} | {nat['subnet_id']} (" in artifact.data
    assert artifact.data.count("| unknown (no data) |") == len(report["nat_gateways"]) == 2
    assert artifact.data == render_markdown(report)  # the very report the step returned


def test_an_s3_endpoint_that_was_there_is_extended_then_narrowed_back_not_deleted(
    seeded: EnvironmentConfig, ctx: StepContext
) -> None:
    ec2 = ctx.clients.ec2
    [vpc] = discover(seeded).vpcs
    public_table = next(s.route_table_id for s in vpc.subnets if s.public)
    theirs = ec2.create_vpc_endpoint(
        VpcEndpointType="Gateway",
        VpcId=vpc.id,
        ServiceName="com.amazonaws.us-east-1.s3",
        RouteTableIds=[public_table],
    )["VpcEndpoint"]["VpcEndpointId"]

    def endpoints() -> dict[str, list[str]]:
        found = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc.id]}])
        return {
            e["VpcEndpointId"]: sorted(e["RouteTableIds"])
            for e in found["VpcEndpoints"]
            if e["State"].lower() != "deleted"
        }

    step = NatRemoval(ctx)
    execute(step, key="test")
    assert endpoints() == {theirs: sorted(t.id for t in vpc.route_tables)}

    undo(step)
    assert endpoints() == {theirs: [public_table]}


def test_an_elastic_ip_a_nat_gateway_still_holds_is_not_released(
    seeded: EnvironmentConfig, ctx: StepContext
) -> None:
    """moto would release it; AWS refuses, so phasegate refuses first."""
    nat = discover(seeded).nat_gateways[0]
    with pytest.raises(
        PhasegateError, match=f"{nat.allocation_ids[0]} is still held by NAT gateway {nat.id}"
    ):
        NatRemoval(ctx)._release_addresses(
            [{"allocation_ids": nat.allocation_ids, "network_interface_ids": []}]
        )
    addresses = ctx.clients.ec2.describe_addresses(AllocationIds=nat.allocation_ids)["Addresses"]
    assert len(addresses) == 1
