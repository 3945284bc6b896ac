"""compute.graviton against the sandbox: Fargate ARM64 and the EC2 Auto Scaling group target.

Every test runs the step through phasegate.lifecycle, as the Prefect task does, and proves
its claims from AWS (the sandbox) and from the server-side call log, never from the step's
own report.
"""

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import write_environment

from phasegate.aws import AwsClients, recording_calls
from phasegate.config import EnvironmentConfig, parse_environment
from phasegate.inventory import discover
from phasegate.lifecycle import StepFailed, execute, plan, undo
from phasegate.sandbox.app import is_mutating
from phasegate.steps import StepContext, StepRefused
from tasks.compute import (
    CREATED_BY_TAG,
    DESIRED_BEFORE_TAG,
    GravitonCompute,
    manifest_verdict,
    parse_ecr_image,
    registrable,
    user_data,
)
from tasks.compute_ec2 import Ec2AutoScalingGraviton, forward_targets

CLUSTER, SERVICE, FAMILY = "demo-cluster", "demo-api", "demo-api"
REPOSITORY = "demo/platform-api"


# -- helpers -----------------------------------------------------------------------------------


def clear_calls(sandbox: str) -> None:
    requests.delete(f"{sandbox}/_phasegate/calls", timeout=10).raise_for_status()


def mutating_calls(sandbox: str) -> list[dict[str, str]]:
    calls = requests.get(f"{sandbox}/_phasegate/calls", timeout=10).json()
    return [c for c in calls if is_mutating(c["action"])]


def service(clients: AwsClients) -> dict[str, Any]:
    return clients.ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]


def task_definition(clients: AwsClients, arn: str) -> dict[str, Any]:
    found = clients.ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
    return {**found["taskDefinition"], "tags": found.get("tags", [])}


def active_revisions(clients: AwsClients) -> list[str]:
    return clients.ecs.list_task_definitions(familyPrefix=FAMILY, status="ACTIVE")[
        "taskDefinitionArns"
    ]


def step_for(config: EnvironmentConfig) -> GravitonCompute:
    return GravitonCompute(StepContext.for_environment(config))


def assert_calls_allowed(step: GravitonCompute, actions: list[str]) -> None:
    """Every AWS action the step used is in its iam_actions (the policy an operator grants)."""
    used = set(actions)
    assert used <= set(step.iam_actions), sorted(used - set(step.iam_actions))


def put_image(clients: AwsClients, tag: str, manifest: dict[str, Any], media_type: str) -> str:
    """Push one manifest to the demo repository under `tag`; the image URI."""
    body = json.dumps(manifest)
    clients.ecr.put_image(
        repositoryName=REPOSITORY,
        imageManifest=body,
        imageManifestMediaType=media_type,
        imageTag=tag,
        imageDigest="sha256:" + hashlib.sha256(body.encode()).hexdigest(),
    )
    uri = clients.ecr.describe_repositories(repositoryNames=[REPOSITORY])["repositories"][0][
        "repositoryUri"
    ]
    return f"{uri}:{tag}"


def run_service_on(clients: AwsClients, image: str) -> str:
    """A new X86_64 revision of the service's task definition with `image`, rolled out."""
    current = task_definition(clients, service(clients)["taskDefinition"])
    spec = registrable(current)
    spec["containerDefinitions"] = [{**spec["containerDefinitions"][0], "image": image}]
    arn = clients.ecs.register_task_definition(**spec)["taskDefinition"]["taskDefinitionArn"]
    clients.ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=arn, desiredCount=2)
    return arn


SINGLE_AMD64 = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {
        "mediaType": "application/vnd.docker.container.image.v1+json",
        "size": 2,
        "digest": "sha256:" + "a" * 64,
    },
    "layers": [
        {
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "size": 1,
            "digest": "sha256:" + "b" * 64,
        }
    ],
}
LIST_AMD64_ONLY = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
    "manifests": [
        {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "size": 100,
            "digest": "sha256:" + "c" * 64,
            "platform": {"architecture": "amd64", "os": "linux"},
        }
    ],
}
SCHEMA1_AMD64 = {
    "schemaVersion": 1,
    "name": REPOSITORY,
    "tag": "old",
    "architecture": "amd64",
    "fsLayers": [{"blobSum": "sha256:" + "d" * 64}],
    "history": [{"v1Compatibility": "{}"}],
}


# -- pure helpers ------------------------------------------------------------------------------


def test_parse_ecr_image() -> None:
    image = parse_ecr_image("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/api:1.2")
    assert image is not None
    assert (image.account, image.region, image.repository) == (
        "123456789012",
        "eu-west-1",
        "team/api",
    )
    assert image.image_id == {"imageTag": "1.2"}
    digest = "sha256:" + "0" * 64
    by_digest = parse_ecr_image(f"123456789012.dkr.ecr.us-east-1.amazonaws.com/api@{digest}")
    assert by_digest is not None and by_digest.image_id == {"imageDigest": digest}
    untagged = parse_ecr_image("123456789012.dkr.ecr.us-east-1.amazonaws.com/api")
    assert untagged is not None and untagged.image_id == {"imageTag": "latest"}
    assert parse_ecr_image("public.ecr.aws/phasegate/platform-api:1.4.2") is None
    assert parse_ecr_image("nginx:1.27") is None


def test_manifest_verdicts() -> None:
    media = "application/vnd.oci.image.index.v1+json"
    index = {
        "mediaType": media,
        "manifests": [
            {"platform": {"os": "linux", "architecture": "amd64"}},
            {"platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"platform": {"os": "unknown", "architecture": "unknown"}},  # buildx attestation
        ],
    }
    assert manifest_verdict(index, media)[0] == "arm64"
    assert manifest_verdict(LIST_AMD64_ONLY, LIST_AMD64_ONLY["mediaType"]) == (
        "no-arm64",
        "its manifest list has no linux/arm64 manifest (only linux/amd64)",
    )
    assert manifest_verdict(SINGLE_AMD64, SINGLE_AMD64["mediaType"])[0] == "unknown"
    schema1 = "application/vnd.docker.distribution.manifest.v1+json"
    assert manifest_verdict(SCHEMA1_AMD64, schema1)[0] == "no-arm64"
    assert manifest_verdict({**SCHEMA1_AMD64, "architecture": "arm64"}, "")[0] == "arm64"


def test_user_data_runs_the_task_definition_container() -> None:
    script = user_data(
        {
            "name": "api",
            "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo/platform-api:1.4.2",
            "environment": [{"name": "GREETING", "value": "hello world"}],
            "command": ["serve", "--port", "8000"],
        },
        8000,
    )
    assert script.startswith("#!/bin/bash\n")
    assert "docker login --username AWS --password-stdin " in script
    assert "123456789012.dkr.ecr.us-east-1.amazonaws.com" in script
    assert "--publish 8000:8000" in script
    assert "'GREETING=hello world'" in script
    assert script.rstrip().endswith("demo/platform-api:1.4.2 serve --port 8000")


# -- Fargate ARM64 -----------------------------------------------------------------------------


def test_fargate_plan_states_cost_and_reversibility(seeded: EnvironmentConfig) -> None:
    step = step_for(seeded)
    change = plan(step)
    assert change is not None
    assert change.before["services"][f"{CLUSTER}/{SERVICE}"]["task_definition"].endswith(":1")
    assert change.reversibility.restart_needed and change.reversibility.rollback_possible
    assert "no downtime" in change.reversibility.expected_disruption
    # 2 tasks x (0.5 vCPU, 1 GB) x 730 h: X86_64 -> ARM64 Fargate rates.
    x86 = 2 * 730 * (0.5 * 0.04048 + 1 * 0.004445)
    arm = 2 * 730 * (0.5 * 0.03238 + 1 * 0.00356)
    assert change.monthly_cost_delta == pytest.approx(arm - x86, abs=0.01)
    assert change.monthly_cost_delta < 0
    assert change.desired["unchecked_images"] == []


def test_fargate_execute_then_rerun_is_unchanged_with_no_mutating_call(
    seeded: EnvironmentConfig, sandbox: str
) -> None:
    step = step_for(seeded)
    clients = step.clients
    before = discover(seeded)
    old_arn = service(clients)["taskDefinition"]

    record = execute(step, key="t")

    assert record.outcome == "applied"
    [svc] = discover(seeded).services
    assert svc.architecture == "ARM64"
    assert svc.running == svc.desired == 2
    revisions = active_revisions(clients)
    assert len(revisions) == 2, revisions
    new_arn = svc.task_definition
    assert new_arn != old_arn and new_arn in revisions
    old, new = task_definition(clients, old_arn), task_definition(clients, new_arn)
    assert new["runtimePlatform"] == {"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"}
    same = {k: v for k, v in registrable(old).items() if k != "runtimePlatform"}
    assert {k: v for k, v in registrable(new).items() if k != "runtimePlatform"} == same
    tags = {t["key"]: t["value"] for t in new["tags"]}
    assert tags[CREATED_BY_TAG] == "compute.graviton" and tags["Environment"] == "demo"
    assert record.before["services"][f"{CLUSTER}/{SERVICE}"]["task_definition"] == old_arn
    ctx = step.ctx
    assert record.change is not None
    assert ctx.cost_delta(before, discover(seeded)) == record.change.monthly_cost_delta
    assert_calls_allowed(step, record.api_actions)

    clear_calls(sandbox)
    again = execute(step_for(seeded), key="t")
    assert again.outcome == "unchanged"
    assert mutating_calls(sandbox) == []
    assert len(active_revisions(clients)) == 2


def test_fargate_apply_twice_or_after_a_crash_registers_one_revision(
    seeded: EnvironmentConfig,
) -> None:
    step = step_for(seeded)
    clients = step.clients
    change = plan(step)
    assert change is not None
    old_arn = service(clients)["taskDefinition"]

    first = step.apply(change)
    second = step.apply(change)  # a retry of a run that crashed after finishing
    key = f"{CLUSTER}/{SERVICE}"
    new_arn = first["services"][key]["task_definition"]
    assert first["services"][key] == {"task_definition": new_arn, "registered": True}
    assert second["services"][key] == {"task_definition": new_arn, "registered": False}
    assert len(active_revisions(clients)) == 2

    # A crash after registering and before update_service: the service is still on the old
    # revision, the ARM64 one exists. The retry must reuse it.
    clients.ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=old_arn)
    third = step.apply(change)
    assert third["services"][key]["task_definition"] == new_arn
    assert service(clients)["taskDefinition"] == new_arn
    assert len(active_revisions(clients)) == 2


@pytest.mark.parametrize(
    ("manifest", "media_type", "reason"),
    [
        (SINGLE_AMD64, SINGLE_AMD64["mediaType"], "single-platform manifest"),
        (LIST_AMD64_ONLY, LIST_AMD64_ONLY["mediaType"], "only linux/amd64"),
        (
            SCHEMA1_AMD64,
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            "single-platform image for amd64",
        ),
    ],
    ids=["single-arch", "list-amd64-only", "schema1-amd64"],
)
def test_fargate_refuses_an_image_without_arm64(
    seeded: EnvironmentConfig,
    sandbox: str,
    manifest: dict[str, Any],
    media_type: str,
    reason: str,
) -> None:
    step = step_for(seeded)
    clients = step.clients
    image = put_image(clients, "1.5.0-amd64", manifest, media_type)
    amd64_arn = run_service_on(clients, image)
    clear_calls(sandbox)

    with pytest.raises(StepFailed) as failed:
        execute(step, key="t")

    message = str(failed.value)
    assert isinstance(failed.value.cause, StepRefused)
    assert image in message and f"{CLUSTER}/{SERVICE}" in message and reason in message
    assert "demo: step compute.graviton failed" in message
    assert mutating_calls(sandbox) == []
    assert service(clients)["taskDefinition"] == amd64_arn


def test_fargate_image_outside_ecr_is_a_recorded_warning(seeded: EnvironmentConfig) -> None:
    step = step_for(seeded)
    run_service_on(step.clients, "public.ecr.aws/phasegate/platform-api:1.4.2")
    change = plan(step)
    assert change is not None
    [warning] = change.desired["unchecked_images"]
    assert "public.ecr.aws/phasegate/platform-api:1.4.2" in warning and "not checked" in warning
    assert any(a.startswith("warning: ") for a in change.actions)


def test_fargate_undo_returns_to_the_x86_revision(seeded: EnvironmentConfig) -> None:
    step = step_for(seeded)
    clients = step.clients
    old_arn = service(clients)["taskDefinition"]
    execute(step, key="t")
    new_arn = service(clients)["taskDefinition"]

    with recording_calls() as calls:
        undo(step)

    svc = service(clients)
    assert svc["taskDefinition"] == old_arn
    assert svc["runningCount"] == svc["desiredCount"] == 2
    assert discover(seeded).services[0].architecture == "X86_64"
    assert task_definition(clients, new_arn)["status"] == "INACTIVE"
    assert active_revisions(clients) == [old_arn]
    assert_calls_allowed(step, calls)
    assert plan(step_for(seeded)) is not None  # the step would run again


# -- EC2 Auto Scaling group of t4g.medium ------------------------------------------------------


@pytest.fixture
def ec2_config(seeded: EnvironmentConfig, sandbox: str, tmp_path: Path) -> EnvironmentConfig:
    """The seeded 'demo' environment, configured for the EC2 Auto Scaling group target."""
    path = write_environment(tmp_path, "demo", sandbox, targets={"compute": "ec2-asg-graviton"})
    return parse_environment(path)


def listener(clients: AwsClients) -> dict[str, Any]:
    alb = clients.elbv2.describe_load_balancers(Names=["demo-alb"])["LoadBalancers"][0]
    return clients.elbv2.describe_listeners(LoadBalancerArn=alb["LoadBalancerArn"])["Listeners"][0]


def target_group_arn(clients: AwsClients, name: str) -> str:
    return clients.elbv2.describe_target_groups(Names=[name])["TargetGroups"][0]["TargetGroupArn"]


def test_ec2_execute_runs_the_app_on_a_graviton_group(ec2_config: EnvironmentConfig, sandbox: str):
    step = step_for(ec2_config)
    clients = step.clients
    before = discover(ec2_config)
    app_tg = target_group_arn(clients, "demo-app")

    record = execute(step, key="t")

    assert record.outcome == "applied"
    group = clients.autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=["demo-app-graviton"]
    )["AutoScalingGroups"][0]
    ec2_tg = clients.elbv2.describe_target_groups(Names=["demo-app-ec2"])["TargetGroups"][0]
    assert ec2_tg["TargetType"] == "instance" and ec2_tg["Port"] == 8000
    assert ec2_tg["HealthCheckPath"] == "/health"
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (1, 5, 2)
    assert group["TargetGroupARNs"] == [ec2_tg["TargetGroupArn"]]
    in_service = [i for i in group["Instances"] if i["LifecycleState"] == "InService"]
    assert len(in_service) == 2 and {i["InstanceType"] for i in in_service} == {"t4g.medium"}
    health = clients.elbv2.describe_target_health(TargetGroupArn=ec2_tg["TargetGroupArn"])
    assert {d["Target"]["Id"] for d in health["TargetHealthDescriptions"]} == {
        i["InstanceId"] for i in in_service
    }
    public = {s.id for s in before.subnets if s.public}
    assert set(group["VPCZoneIdentifier"].split(",")) == public
    tags = {t["Key"]: t for t in group["Tags"]}
    assert tags["Environment"]["Value"] == "demo" and tags["Environment"]["PropagateAtLaunch"]
    assert tags[DESIRED_BEFORE_TAG]["Value"] == "2"
    assert listener(clients)["DefaultActions"][0]["TargetGroupArn"] == ec2_tg["TargetGroupArn"]
    svc = service(clients)
    assert svc["desiredCount"] == svc["runningCount"] == 0

    # The instances: arm64 AMI, the launch template's user data runs the task's image.
    instances = clients.ec2.describe_instances(InstanceIds=[i["InstanceId"] for i in in_service])
    for reservation in instances["Reservations"]:
        for instance in reservation["Instances"]:
            assert instance["Architecture"] == "arm64"
    template = clients.ec2.describe_launch_template_versions(
        LaunchTemplateName="demo-app-graviton", Versions=["$Latest"]
    )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    script = base64.b64decode(template["UserData"]).decode()
    image = before.services[0].images[0]
    assert image in script and "--publish 8000:8000" in script
    assert template["InstanceType"] == "t4g.medium"
    [sg_id] = template["NetworkInterfaces"][0]["Groups"]
    [sg] = clients.ec2.describe_security_groups(GroupIds=[sg_id])["SecurityGroups"]
    [alb] = before.load_balancers
    assert [
        (p["FromPort"], p["ToPort"], sorted(g["GroupId"] for g in p["UserIdGroupPairs"]))
        for p in sg["IpPermissions"]
    ] == [(8000, 8000, alb.security_groups)]
    assert not any(p["IpRanges"] for p in sg["IpPermissions"])
    assert app_tg != ec2_tg["TargetGroupArn"]

    # Discovery sees the group; the cost moves by what the plan said.
    after = discover(ec2_config)
    [asg] = after.autoscaling_groups
    assert (asg.name, asg.instance_types, asg.in_service) == (
        "demo-app-graviton",
        ["t4g.medium"],
        2,
    )
    assert record.change is not None
    assert step.ctx.cost_delta(before, after) == record.change.monthly_cost_delta
    # 2 x t4g.medium + their 2 public IPv4 addresses replace 2 Fargate X86_64 tasks.
    fargate = 2 * 730 * (0.5 * 0.04048 + 1 * 0.004445)
    ec2 = 2 * 730 * 0.0336 + 2 * 730 * 0.005
    assert record.change.monthly_cost_delta == pytest.approx(ec2 - fargate, abs=0.01)
    assert_calls_allowed(step, record.api_actions)

    clear_calls(sandbox)
    again = execute(step_for(ec2_config), key="t")
    assert again.outcome == "unchanged"
    assert mutating_calls(sandbox) == []


def test_ec2_apply_twice_creates_nothing_twice(ec2_config: EnvironmentConfig) -> None:
    step = step_for(ec2_config)
    clients = step.clients
    change = plan(step)
    assert change is not None
    first = step.apply(change)
    second = step.apply(change)
    assert first == second
    groups = clients.autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
    assert [g["AutoScalingGroupName"] for g in groups] == ["demo-app-graviton"]
    assert len(groups[0]["Instances"]) == 2
    names = [g["TargetGroupName"] for g in clients.elbv2.describe_target_groups()["TargetGroups"]]
    assert sorted(names) == ["demo-app", "demo-app-ec2"]
    templates = clients.ec2.describe_launch_templates()["LaunchTemplates"]
    assert [t["LaunchTemplateName"] for t in templates] == ["demo-app-graviton"]


def test_ec2_drift_is_planned_again_with_the_original_desired_count(
    ec2_config: EnvironmentConfig,
) -> None:
    step = step_for(ec2_config)
    clients = step.clients
    execute(step, key="t")
    # Someone points the listener back at the (empty) ECS target group by hand.
    app_tg = target_group_arn(clients, "demo-app")
    clients.elbv2.modify_listener(
        ListenerArn=listener(clients)["ListenerArn"],
        DefaultActions=[{"Type": "forward", "TargetGroupArn": app_tg}],
    )
    change = plan(step_for(ec2_config))
    assert change is not None
    # ECS is at 0 now; the before-state still restores 2, read back from the group's tag.
    assert change.before["services"][f"{CLUSTER}/{SERVICE}"]["desired"] == 2
    execute(step_for(ec2_config), key="t2")
    assert listener(clients)["DefaultActions"][0]["TargetGroupArn"] == target_group_arn(
        clients, "demo-app-ec2"
    )
    undo(step_for(ec2_config))
    assert service(clients)["desiredCount"] == 2


def test_ec2_undo_restores_ecs_and_the_listener(ec2_config: EnvironmentConfig) -> None:
    step = step_for(ec2_config)
    clients = step.clients
    before = discover(ec2_config)
    app_tg = target_group_arn(clients, "demo-app")
    execute(step, key="t")

    with recording_calls() as calls:
        undo(step)

    svc = service(clients)
    assert svc["desiredCount"] == svc["runningCount"] == 2
    assert listener(clients)["DefaultActions"][0]["TargetGroupArn"] == app_tg
    assert clients.autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"] == []
    names = [g["TargetGroupName"] for g in clients.elbv2.describe_target_groups()["TargetGroups"]]
    assert names == ["demo-app"]
    assert clients.ec2.describe_launch_templates()["LaunchTemplates"] == []
    groups = clients.ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["demo-app-graviton"]}]
    )["SecurityGroups"]
    assert groups == []
    assert clients.iam.list_instance_profiles()["InstanceProfiles"] == []
    after = discover(ec2_config)
    assert after.services == before.services
    assert after.load_balancers == before.load_balancers
    assert after.autoscaling_groups == []
    assert_calls_allowed(step, calls)


def test_ec2_refuses_an_existing_ip_target_group(
    ec2_config: EnvironmentConfig, sandbox: str
) -> None:
    """moto accepts an Auto Scaling group on an 'ip' target group; AWS does not. The step
    checks it itself rather than relying on the API to refuse."""
    step = step_for(ec2_config)
    clients = step.clients
    vpc = discover(ec2_config).vpcs[0].id
    clients.elbv2.create_target_group(
        Name="demo-app-ec2", Protocol="HTTP", Port=8000, VpcId=vpc, TargetType="ip"
    )
    clear_calls(sandbox)
    with pytest.raises(StepFailed, match=r"target type 'ip'.*needs target type 'instance'"):
        execute(step, key="t")
    assert mutating_calls(sandbox) == []

    with pytest.raises(StepRefused, match="'ip'"):
        Ec2AutoScalingGraviton(step)._require_instance_target_groups(
            [target_group_arn(clients, "demo-app")]
        )


@pytest.fixture
def weighted_half_applied(ec2_config: EnvironmentConfig, sandbox: str) -> dict[str, Any]:
    """A run that stopped while waiting for the new group's instances: the listener forwards
    to the ECS group at weight 1 and the new group at weight 0 (AWS health-checks a group
    only while a listener forwards to it, so the wait cannot come first)."""
    step = step_for(ec2_config)
    clients = step.clients
    original = listener(clients)["DefaultActions"]
    fault = {"action": "DescribeTargetHealth", "code": "AccessDenied", "status": 403}
    requests.post(f"{sandbox}/_phasegate/faults", json=fault, timeout=10).raise_for_status()
    try:
        with pytest.raises(StepFailed, match=r"DescribeTargetHealth.*AccessDenied"):
            execute(step, key="t")
    finally:
        requests.delete(f"{sandbox}/_phasegate/faults", timeout=10).raise_for_status()
    [action] = listener(clients)["DefaultActions"]
    weights = {g["TargetGroupArn"]: g["Weight"] for g in action["ForwardConfig"]["TargetGroups"]}
    assert weights == {
        target_group_arn(clients, "demo-app"): 1,
        target_group_arn(clients, "demo-app-ec2"): 0,
    }
    return {"step": step, "original": original}


def test_ec2_a_run_stopped_at_weight_0_resumes_to_the_new_group_alone(
    ec2_config: EnvironmentConfig, weighted_half_applied: dict[str, Any]
) -> None:
    step = step_for(ec2_config)
    record = execute(step, key="t")
    assert record.outcome == "applied"
    actions = listener(step.clients)["DefaultActions"]
    assert forward_targets(actions) == {target_group_arn(step.clients, "demo-app-ec2")}
    assert_calls_allowed(step, record.api_actions)


def test_ec2_a_run_stopped_at_weight_0_rolls_back_to_the_original_listener(
    ec2_config: EnvironmentConfig, weighted_half_applied: dict[str, Any]
) -> None:
    step = step_for(ec2_config)
    clients = step.clients
    with recording_calls() as calls:
        undo(step)
    assert listener(clients)["DefaultActions"] == weighted_half_applied["original"]
    names = [g["TargetGroupName"] for g in clients.elbv2.describe_target_groups()["TargetGroups"]]
    assert names == ["demo-app"]
    assert clients.autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"] == []
    svc = service(clients)
    assert svc["desiredCount"] == svc["runningCount"] == 2
    assert_calls_allowed(step, calls)
