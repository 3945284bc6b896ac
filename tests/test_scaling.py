"""scaling.enable against the sandbox over HTTP, for both compute targets: the scalable target
(or the group's bounds) and both target-tracking policies as config says, no mutating call on a
re-run, the running count never lowered, and rollback back to the settings from before."""

from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import write_environment

from phasegate.config import EnvironmentConfig, parse_environment
from phasegate.lifecycle import StepFailed, execute, plan, undo
from phasegate.sandbox.app import is_mutating
from phasegate.steps import StepContext, StepRefused
from tasks.compute import GravitonCompute
from tasks.scaling import ECS_DIMENSION, ScalingEnable

RESOURCE = "service/demo-cluster/demo-api"


def mutating_calls(sandbox: str) -> list[str]:
    calls = requests.get(f"{sandbox}/_phasegate/calls", timeout=10).json()
    return [f"{c['service']}:{c['action']}" for c in calls if is_mutating(c["action"])]


def clear_calls(sandbox: str) -> None:
    requests.delete(f"{sandbox}/_phasegate/calls", timeout=10).raise_for_status()


def aas(ctx: StepContext) -> Any:
    return ctx.clients.client("application-autoscaling")


def scalable_targets(ctx: StepContext) -> list[dict[str, Any]]:
    return aas(ctx).describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]


def ecs_policies(ctx: StepContext) -> dict[str, dict[str, Any]]:
    found = aas(ctx).describe_scaling_policies(ServiceNamespace="ecs")["ScalingPolicies"]
    return {p["PolicyName"]: p["TargetTrackingScalingPolicyConfiguration"] for p in found}


def config_with(tmp_path: Path, sandbox: str, **overrides: object) -> EnvironmentConfig:
    return parse_environment(write_environment(tmp_path, "demo", sandbox, **overrides))


def test_ecs_target_and_both_policies_with_the_config_values(
    seeded: EnvironmentConfig, sandbox: str, tmp_path: Path
) -> None:
    config = config_with(
        tmp_path,
        sandbox,
        scaling={"min_capacity": 2, "max_capacity": 8, "cpu_target_percent": 55,
                 "requests_per_target": 750, "scale_in_cooldown_seconds": 420},
    )  # fmt: skip
    ctx = StepContext.for_environment(config)
    step = ScalingEnable(ctx)
    clear_calls(sandbox)
    change = plan(step)
    assert mutating_calls(sandbox) == []
    assert change is not None and change.before["target"] is None
    assert change.monthly_cost_delta == pytest.approx(0.40)  # 2 policies x 2 alarms x $0.10

    record = execute(step, key="t")

    assert record.outcome == "applied"
    [target] = scalable_targets(ctx)
    assert (target["ResourceId"], target["ScalableDimension"]) == (RESOURCE, ECS_DIMENSION)
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 8)
    policies = ecs_policies(ctx)
    assert set(policies) == {"demo-cpu", "demo-requests"}
    cpu, requests_ = policies["demo-cpu"], policies["demo-requests"]
    assert cpu["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
        "ECSServiceAverageCPUUtilization"
    )
    assert (cpu["TargetValue"], cpu["ScaleInCooldown"], cpu["ScaleOutCooldown"]) == (55, 420, 60)
    spec = requests_["PredefinedMetricSpecification"]
    assert spec["PredefinedMetricType"] == "ALBRequestCountPerTarget"
    assert (
        spec["ResourceLabel"].startswith("app/demo-alb/")
        and "/targetgroup/demo-app/" in (spec["ResourceLabel"])
    )
    assert requests_["TargetValue"] == 750
    tags = aas(ctx).list_tags_for_resource(ResourceARN=target["ScalableTargetARN"])["Tags"]
    assert tags == {"Environment": "demo", "phasegate:created-by": "scaling.enable"}
    assert set(record.api_actions) <= set(step.iam_actions)

    clear_calls(sandbox)
    again = execute(ScalingEnable(ctx), key="t")
    assert again.outcome == "unchanged"
    assert mutating_calls(sandbox) == []

    undo(step)
    assert scalable_targets(ctx) == []
    assert ecs_policies(ctx) == {}


def test_rollback_restores_a_scalable_target_that_was_there(
    seeded: EnvironmentConfig, sandbox: str
) -> None:
    ctx = StepContext.for_environment(seeded)
    aas(ctx).register_scalable_target(
        ServiceNamespace="ecs", ResourceId=RESOURCE, ScalableDimension=ECS_DIMENSION,
        MinCapacity=1, MaxCapacity=3,
    )  # fmt: skip
    step = ScalingEnable(ctx)
    record = execute(step, key="t")
    assert record.before["target"] == {"min": 1, "max": 3}
    assert [(t["MinCapacity"], t["MaxCapacity"]) for t in scalable_targets(ctx)] == [(2, 6)]

    undo(step)

    assert [(t["MinCapacity"], t["MaxCapacity"]) for t in scalable_targets(ctx)] == [(1, 3)]
    assert ecs_policies(ctx) == {}


def test_refuses_to_lower_the_running_count(
    seeded: EnvironmentConfig, sandbox: str, tmp_path: Path
) -> None:
    config = config_with(tmp_path, sandbox, scaling={"min_capacity": 1, "max_capacity": 1})
    ctx = StepContext.for_environment(config)
    clear_calls(sandbox)

    with pytest.raises(StepFailed) as failed:
        execute(ScalingEnable(ctx), key="t")

    assert isinstance(failed.value.cause, StepRefused)
    for part in ("demo", "scaling.enable", RESOURCE, "runs 2", "scaling.max_capacity"):
        assert part in str(failed.value)
    assert mutating_calls(sandbox) == []
    service = ctx.clients.ecs.describe_services(cluster="demo-cluster", services=["demo-api"])
    assert service["services"][0]["desiredCount"] == 2


def test_ec2_group_bounds_policies_and_rollback(
    seeded: EnvironmentConfig, sandbox: str, tmp_path: Path
) -> None:
    config = config_with(tmp_path, sandbox, targets={"compute": "ec2-asg-graviton"})
    ctx = StepContext.for_environment(config)
    execute(GravitonCompute(ctx), key="phase1")
    autoscaling = ctx.clients.autoscaling

    def group() -> dict[str, Any]:
        return autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=["demo-app-graviton"]
        )["AutoScalingGroups"][0]

    assert (group()["MinSize"], group()["MaxSize"]) == (1, 5)
    # Someone narrowed the group by hand after phase 1: scaling.enable widens it back to
    # targets.asg_min-asg_max, and its rollback restores the narrowed bounds.
    autoscaling.update_auto_scaling_group(AutoScalingGroupName="demo-app-graviton", MaxSize=3)
    step = ScalingEnable(ctx)

    record = execute(step, key="t")

    assert record.outcome == "applied"
    assert (group()["MinSize"], group()["MaxSize"], group()["DesiredCapacity"]) == (1, 5, 2)
    policies = {
        p["PolicyName"]: p
        for p in autoscaling.describe_policies(AutoScalingGroupName="demo-app-graviton")[
            "ScalingPolicies"
        ]
    }
    assert set(policies) == {"demo-cpu", "demo-requests"}
    cpu = policies["demo-cpu"]["TargetTrackingConfiguration"]
    assert cpu["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
        "ASGAverageCPUUtilization"
    )
    assert cpu["TargetValue"] == 60
    label = policies["demo-requests"]["TargetTrackingConfiguration"][
        "PredefinedMetricSpecification"
    ]["ResourceLabel"]
    assert "/targetgroup/demo-app-ec2/" in label
    assert {m["Metric"] for m in group()["EnabledMetrics"]} >= {"GroupInServiceInstances"}
    assert scalable_targets(ctx) == []  # the ECS service is not the one scaled

    clear_calls(sandbox)
    assert execute(ScalingEnable(ctx), key="t").outcome == "unchanged"
    assert mutating_calls(sandbox) == []

    undo(step)

    assert (group()["MinSize"], group()["MaxSize"]) == (1, 3)
    assert (
        autoscaling.describe_policies(AutoScalingGroupName="demo-app-graviton")["ScalingPolicies"]
        == []
    )
    assert group().get("EnabledMetrics", []) == []
