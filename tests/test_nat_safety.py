"""nat.remove on an account that is not the seeded demo: strays in the private subnets, data
stores that admit only the private CIDRs, partner routes through a NAT, released addresses."""

from pathlib import Path
from typing import Any

import requests
from conftest import write_environment
from typer.testing import CliRunner

from flows.phase1 import phase1
from phasegate.approvals import describe
from phasegate.checkpoints import checkpoint_storage
from phasegate.cli import app
from phasegate.config import EnvironmentConfig, parse_environment
from phasegate.inventory import discover
from phasegate.lifecycle import execute, plan, undo
from phasegate.sandbox.app import is_mutating
from phasegate.steps import StepContext
from tasks.nat_remove import NatRemoval

PARTNER_CIDR = "192.168.50.0/24"


def mutating_calls(endpoint: str) -> list[str]:
    calls = requests.get(f"{endpoint}/_phasegate/calls", timeout=10).json()
    return [f"{c['service']}:{c['action']}" for c in calls if is_mutating(c["action"])]


def clear_calls(endpoint: str) -> None:
    requests.delete(f"{endpoint}/_phasegate/calls", timeout=10).raise_for_status()


def private_subnets(config: EnvironmentConfig) -> list[str]:
    return sorted(s.id for s in discover(config).subnets if not s.public)


def add_strays(config: EnvironmentConfig) -> tuple[str, str, str]:
    """An unmanaged EC2 instance and an untagged ECS service in the private subnets: the
    instance, its network interface and the service's cluster/name."""
    ctx = StepContext.for_environment(config)
    ec2, ecs = ctx.clients.ec2, ctx.clients.ecs
    subnets = private_subnets(config)
    image = ec2.describe_images(Filters=[{"Name": "architecture", "Values": ["x86_64"]}])["Images"]
    instance = ec2.run_instances(
        ImageId=image[0]["ImageId"],
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        SubnetId=subnets[0],
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "batch-box"}]}
        ],
    )["Instances"][0]
    eni = instance["NetworkInterfaces"][0]["NetworkInterfaceId"]
    vpc_id = discover(config).vpcs[0].id
    group = ec2.create_security_group(GroupName="reports", Description="reports", VpcId=vpc_id)
    ecs.create_cluster(clusterName="reports")
    task = ecs.register_task_definition(
        family="reports",
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
        containerDefinitions=[{"name": "r", "image": "busybox", "memory": 512}],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(
        cluster="reports",
        serviceName="nightly",
        taskDefinition=task,
        desiredCount=1,
        launchType="FARGATE",
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": subnets,
                "securityGroups": [group["GroupId"]],
                "assignPublicIp": "DISABLED",
            }
        },
    )
    return instance["InstanceId"], eni, "reports/nightly"


def test_strays_block_plan_and_run_until_acknowledged(
    seeded: EnvironmentConfig, tmp_path: Path, prefect_client_env: str
) -> None:
    endpoint = seeded.aws.endpoint_url
    assert endpoint
    instance, eni, service = add_strays(seeded)
    before = discover(seeded)
    clear_calls(endpoint)

    planned = CliRunner().invoke(app, ["plan", str(seeded.source), "--phase", "1"])
    assert planned.exit_code == 1, planned.output
    flat = " ".join(planned.output.split())
    assert f"interface {eni} (ec2-instance {instance}" in flat
    assert "'Name': 'batch-box'" in flat
    assert f"ECS service {service} (not this environment's" in flat
    assert flat.count("BLOCKER") == 2
    assert mutating_calls(endpoint) == []

    ran = CliRunner().invoke(app, ["run", str(seeded.source), "--phase", "1", "--auto-approve"])
    assert ran.exit_code == 1, ran.output
    said = " ".join((ran.output + str(ran.stderr_bytes or b"")).split())
    assert "refused" in said and eni in said
    assert mutating_calls(endpoint) == []
    assert discover(seeded) == before

    acknowledged = parse_environment(
        write_environment(tmp_path, "demo", endpoint, nat={"accept_egress_loss": [eni, service]})
    )
    with checkpoint_storage(acknowledged):
        records = phase1(str(acknowledged.source))
    assert {r.step: r.outcome for r in records}["nat.remove"] == "applied"
    assert discover(acknowledged).nat_gateways == []
    [removal] = [r for r in records if r.step == "nat.remove"]
    assert removal.change is not None and removal.change.blockers == []
    assert any(eni in a and "accepted egress loss" in a for a in removal.change.actions)


def test_interfaces_of_terminated_instances_block_nothing(seeded: EnvironmentConfig) -> None:
    """An Auto Scaling group in the private subnets blocks the removal; once it is deleted its
    instances are terminated and their interfaces are no workload (AWS deletes them with the
    instance; the sandbox, like AWS for a while, still lists them attached)."""
    ctx = StepContext.for_environment(seeded)
    image = ctx.clients.ec2.describe_images()["Images"][0]["ImageId"]
    template = {"ImageId": image, "InstanceType": "t3.micro"}
    ctx.clients.ec2.create_launch_template(LaunchTemplateName="batch", LaunchTemplateData=template)
    autoscaling = ctx.clients.autoscaling
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="batch",
        LaunchTemplate={"LaunchTemplateName": "batch"},
        MinSize=2, MaxSize=2, DesiredCapacity=2,
        VPCZoneIdentifier=",".join(private_subnets(seeded)),
    )  # fmt: skip
    live = plan(NatRemoval(ctx))
    assert live is not None
    assert sum("of Auto Scaling group batch" in b for b in live.blockers) == 2

    autoscaling.delete_auto_scaling_group(AutoScalingGroupName="batch", ForceDelete=True)
    gone = plan(NatRemoval(ctx))
    assert gone is not None and gone.blockers == []


def ingress(ctx: StepContext, group_id: str) -> list[dict[str, Any]]:
    [group] = ctx.clients.ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    return sorted(
        group["IpPermissions"], key=lambda p: (p.get("FromPort", -1), p.get("IpProtocol"))
    )


def test_data_stores_admitting_private_cidrs_admit_the_moved_service_until_rollback(
    seeded: EnvironmentConfig,
) -> None:
    ctx = StepContext.for_environment(seeded)
    inventory = discover(seeded)
    private_cidrs = sorted(s.cidr for s in inventory.subnets if not s.public)
    db = ctx.clients.rds.describe_db_instances(DBInstanceIdentifier="demo-db")["DBInstances"][0]
    [data_sg] = [g["VpcSecurityGroupId"] for g in db["VpcSecurityGroups"]]
    # The seed admits the private CIDRs on 5432 and 6379, like a Terraform stack.
    assert {r["CidrIp"] for p in ingress(ctx, data_sg) for r in p["IpRanges"]} == set(private_cidrs)
    seeded_rules = ingress(ctx, data_sg)

    step = NatRemoval(ctx)
    record = execute(step, key="test")
    [service] = discover(seeded).services
    [app_sg] = service.security_groups
    admitted = {
        (p["FromPort"], pair["GroupId"])
        for p in ingress(ctx, data_sg)
        for pair in p.get("UserIdGroupPairs", [])
    }
    assert admitted == {(5432, app_sg), (6379, app_sg)}
    assert sorted(r["from_port"] for r in record.after["data_store_rules"]) == [5432, 6379]

    undo(step)
    assert ingress(ctx, data_sg) == seeded_rules


def route_tables(ctx: StepContext, vpc_id: str) -> list[dict[str, Any]]:
    """Every route table of the VPC, whole, with NAT gateway ids named by their subnet."""
    ec2 = ctx.clients.ec2
    subnet_of = {
        n["NatGatewayId"]: n["SubnetId"] for n in ec2.describe_nat_gateways()["NatGateways"]
    }
    tables = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])
    found = []
    for table in tables["RouteTables"]:
        for route in table["Routes"]:
            if route.get("NatGatewayId"):
                route["NatGatewayId"] = f"nat@{subnet_of[route['NatGatewayId']]}"
        table["Routes"].sort(key=lambda r: str(sorted(r.items())))
        found.append(table)
    return sorted(found, key=lambda t: t["RouteTableId"])


def test_a_partner_route_through_a_nat_is_removed_and_restored_with_the_tables_whole(
    seeded: EnvironmentConfig,
) -> None:
    ctx = StepContext.for_environment(seeded)
    ec2 = ctx.clients.ec2
    [vpc] = discover(seeded).vpcs
    private = [t for t in vpc.route_tables if (r := t.default_route()) and r.target_type == "nat"]
    table, nat_id = private[0].id, private[0].default_route().target_id  # type: ignore[union-attr]
    ec2.create_route(RouteTableId=table, DestinationCidrBlock=PARTNER_CIDR, NatGatewayId=nat_id)
    seeded_tables = route_tables(ctx, vpc.id)

    step = NatRemoval(ctx)
    change = plan(step)
    assert change is not None
    assert f"ec2: delete route {PARTNER_CIDR} -> {nat_id} from {table}" in change.actions
    execute(step, key="test")
    assert not [r for t in route_tables(ctx, vpc.id) for r in t["Routes"] if r.get("NatGatewayId")]

    undo(step)
    assert route_tables(ctx, vpc.id) == seeded_tables


def test_a_private_nat_gateway_is_left_alone_and_reported(seeded: EnvironmentConfig) -> None:
    ctx = StepContext.for_environment(seeded)
    subnet = private_subnets(seeded)[0]
    private_nat = ctx.clients.ec2.create_nat_gateway(SubnetId=subnet, ConnectivityType="private")[
        "NatGateway"
    ]["NatGatewayId"]
    step = NatRemoval(ctx)
    change = plan(step)
    assert change is not None
    assert any(
        a.startswith(f"leave NAT gateway {private_nat} alone: private") for a in change.actions
    )
    execute(step, key="test")
    [left] = [n for n in discover(seeded).nat_gateways]
    assert left.id == private_nat


def test_the_approval_form_lists_the_elastic_ips_lost_as_irreversible(
    seeded: EnvironmentConfig,
) -> None:
    ctx = StepContext.for_environment(seeded)
    ips = sorted(ip for n in discover(seeded).nat_gateways for ip in n.public_ips)
    assert len(ips) == 2
    change = plan(NatRemoval(ctx))
    assert change is not None
    form = describe(seeded, 1, [("nat.remove", change)], step="nat.remove")
    lines = form.splitlines()
    for ip in ips:
        [line] = [ln for ln in lines if ip in ln and ln.startswith("- IRREVERSIBLE:")]
        assert "aws:SourceIp" in line
    assert "| yes (partly: see irreversible) |" in form


def network_acl(ctx: StepContext, acl_id: str) -> list[dict[str, Any]]:
    [acl] = ctx.clients.ec2.describe_network_acls(NetworkAclIds=[acl_id])["NetworkAcls"]
    return sorted(acl["Entries"], key=lambda e: (e["Egress"], e["RuleNumber"]))


def test_data_subnet_acls_admitting_private_cidrs_let_the_moved_service_through_until_rollback(
    seeded: EnvironmentConfig,
) -> None:
    """A network ACL on the data stores' subnets that allows only the private CIDRs (5432 and
    6379 in, ephemeral ports back out) gets the same entries for the public subnets' CIDRs,
    each just after the entry it copies; rollback leaves the ACL exactly as it was."""
    ctx = StepContext.for_environment(seeded)
    ec2 = ctx.clients.ec2
    inventory = discover(seeded)
    [vpc] = inventory.vpcs
    private = sorted((s for s in inventory.subnets if not s.public), key=lambda s: s.cidr)
    public_cidrs = sorted(s.cidr for s in inventory.subnets if s.public)
    acl_id = ec2.create_network_acl(VpcId=vpc.id)["NetworkAcl"]["NetworkAclId"]
    number = 100
    for subnet in private:
        for egress, ports in ((False, (5432, 5432)), (False, (6379, 6379)), (True, (1024, 65535))):
            ec2.create_network_acl_entry(
                NetworkAclId=acl_id, RuleNumber=number, Egress=egress, Protocol="6",
                RuleAction="allow", CidrBlock=subnet.cidr,
                PortRange={"From": ports[0], "To": ports[1]},
            )  # fmt: skip
            number += 10
    for subnet in private:
        [current] = ec2.describe_network_acls(
            Filters=[{"Name": "association.subnet-id", "Values": [subnet.id]}]
        )["NetworkAcls"]
        [association] = [a for a in current["Associations"] if a["SubnetId"] == subnet.id]
        ec2.replace_network_acl_association(
            AssociationId=association["NetworkAclAssociationId"], NetworkAclId=acl_id
        )
    seeded_entries = network_acl(ctx, acl_id)

    step = NatRemoval(ctx)
    change = plan(step)
    assert change is not None and change.blockers == []
    assert sum(f"network ACL {acl_id}" in a for a in change.actions) == 6
    record = execute(step, key="test")

    added = [e for e in network_acl(ctx, acl_id) if e not in seeded_entries]
    seen = {
        (e["Egress"], e["CidrBlock"], e["PortRange"]["From"], e["PortRange"]["To"]) for e in added
    }
    assert seen == {
        (egress, cidr, *ports)
        for cidr in public_cidrs
        for egress, ports in ((False, (5432, 5432)), (False, (6379, 6379)), (True, (1024, 65535)))
    }
    assert all(e["RuleAction"] == "allow" for e in added)
    # Each twin sits right after the first entry it copies, so it keeps that entry's place.
    assert sorted(e["RuleNumber"] for e in added if not e["Egress"]) == [101, 102, 111, 112]
    assert len(record.after["data_store_acl_entries"]) == 6

    undo(step)
    assert network_acl(ctx, acl_id) == seeded_entries
