"""spot.enable end to end against the sandbox over HTTP and a real Prefect server: what the
ECS and Auto Scaling APIs show after phase 3, no mutating call on a second run, rollback back
to the settings from before, a critical service marked for Spot refused by the config, and a
plan that prices the change as a dated estimate."""

from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import write_environment
from typer.testing import CliRunner

from flows.phase3 import phase3
from flows.rollback import rollback_phase
from phasegate.checkpoints import checkpoint_storage
from phasegate.cli import app
from phasegate.config import EnvironmentConfig, parse_environment
from phasegate.lifecycle import execute, plan
from phasegate.sandbox.app import is_mutating
from phasegate.steps import StepContext
from tasks.compute import GravitonCompute
from tasks.spot import SpotEnable

pytestmark = pytest.mark.timeout(600)

NON_CRITICAL = {"demo-api": {"critical": False, "spot": True}}


def mutating_calls(sandbox: str) -> list[str]:
    calls = requests.get(f"{sandbox}/_phasegate/calls", timeout=10).json()
    return [f"{c['service']}:{c['action']}" for c in calls if is_mutating(c["action"])]


def capacity(config: EnvironmentConfig) -> dict[str, Any]:
    """The capacity settings spot.enable touches, as the ECS and Auto Scaling APIs show them."""
    c = StepContext.for_environment(config).clients
    service = c.ecs.describe_services(cluster="demo-cluster", services=["demo-api"])["services"][0]
    cluster = c.ecs.describe_clusters(clusters=["demo-cluster"])["clusters"][0]
    groups = c.autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
    listing = c.client("cloudfront").list_distributions()["DistributionList"]
    return {
        "distributions": [(d["Status"], d["Enabled"]) for d in listing.get("Items") or []],
        "strategy": service.get("capacityProviderStrategy") or [],
        "providers": sorted(cluster.get("capacityProviders") or []),
        "groups": [
            (g["AutoScalingGroupName"], g.get("MixedInstancesPolicy"), g.get("CapacityRebalance"))
            for g in groups
        ],
    }


def run(config: EnvironmentConfig) -> None:
    with checkpoint_storage(config):
        phase3(str(config.source))


def roll_back(config: EnvironmentConfig) -> None:
    with checkpoint_storage(config):
        rollback_phase(str(config.source), 3)


@pytest.mark.usefixtures("prefect_client_env")
def test_phase3_on_ecs_rerun_and_rollback(
    seeded: EnvironmentConfig, sandbox: str, tmp_path: Path
) -> None:
    config = parse_environment(
        write_environment(tmp_path, "demo", sandbox, services=NON_CRITICAL, cdn={"enabled": True})
    )
    before = capacity(config)
    deployment = StepContext.for_environment(config).clients.ecs.describe_services(
        cluster="demo-cluster", services=["demo-api"]
    )["services"][0]["deployments"][0]["id"]

    run(config)

    after = capacity(config)
    assert after["strategy"] == [
        {"capacityProvider": "FARGATE", "base": 1, "weight": 1},
        {"capacityProvider": "FARGATE_SPOT", "base": 0, "weight": 3},
    ]
    assert after["providers"] == ["FARGATE", "FARGATE_SPOT"]
    assert after["distributions"] == [("Deployed", True)]
    service = StepContext.for_environment(config).clients.ecs.describe_services(
        cluster="demo-cluster", services=["demo-api"]
    )["services"][0]
    assert service["deployments"][0]["id"] != deployment, "a new deployment was forced"

    requests.delete(f"{sandbox}/_phasegate/calls", timeout=10).raise_for_status()
    run(config)
    assert mutating_calls(sandbox) == []

    roll_back(config)
    assert capacity(config) == before


def test_spot_on_ec2_is_a_mixed_instances_group_and_rolls_back(
    seeded: EnvironmentConfig, sandbox: str, tmp_path: Path
) -> None:
    config = parse_environment(
        write_environment(
            tmp_path,
            "demo",
            sandbox,
            targets={"compute": "ec2-asg-graviton"},
            services=NON_CRITICAL,
        )
    )
    execute(GravitonCompute(StepContext.for_environment(config)), key="phase 1")
    before = capacity(config)
    step = SpotEnable(StepContext.for_environment(config))
    change = step.plan(step.observe())
    assert change is not None and change.monthly_cost_delta < 0
    assert "estimate: Spot 60% below on-demand" in change.summary
    assert "as of 2026-11-27" in change.summary

    record = execute(step, key="phase 3")
    assert set(record.api_actions) <= set(step.iam_actions)

    [(name, policy, rebalance)] = capacity(config)["groups"]
    assert (name, rebalance) == ("demo-app-graviton", True)
    overrides = [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]]
    assert overrides == ["t4g.medium", "c6g.large", "c7g.large"]
    assert policy["InstancesDistribution"]["OnDemandBaseCapacity"] == 1
    assert policy["InstancesDistribution"]["SpotAllocationStrategy"] == "price-capacity-optimized"

    requests.delete(f"{sandbox}/_phasegate/calls", timeout=10).raise_for_status()
    execute(step, key="phase 3")
    assert mutating_calls(sandbox) == []

    step.rollback(record)
    step.verify_rollback(record)
    assert capacity(config) == before


def test_through_terraform_a_service_on_a_launch_type_blocks_spot(
    seeded: EnvironmentConfig, tmp_path: Path
) -> None:
    """The API-seeded service runs on launch type FARGATE: UpdateService gives it a strategy
    in place, but Terraform's provider would replace it (an outage), so through Terraform the
    step is blocked, naming the service and what to change in the stack first."""
    endpoint = str(seeded.aws.endpoint_url)
    config = parse_environment(write_environment(tmp_path, "demo", endpoint, services=NON_CRITICAL))
    step = SpotEnable(StepContext.for_environment(config))
    assert step.terraform_decisions()["enable_spot"] is True
    change = plan(step)
    assert change is not None and change.blockers == []  # the API executor may go ahead
    [blocker] = step.terraform_blockers(change)
    assert blocker.startswith("ECS service demo-cluster/demo-api runs on a launch type")
    assert "give the stack's service a capacity_provider_strategy of FARGATE first" in blocker


def test_a_critical_service_marked_for_spot_is_refused_naming_the_field(
    sandbox: str, tmp_path: Path
) -> None:
    path = write_environment(tmp_path, "demo", sandbox, services={"demo-api": {"spot": True}})
    requests.delete(f"{sandbox}/_phasegate/calls", timeout=10).raise_for_status()

    result = CliRunner().invoke(app, ["plan", str(path), "--phase", "3"])

    assert result.exit_code == 2
    assert "services.demo-api" in result.output and "critical" in result.output
    assert "Traceback" not in result.output
    assert requests.get(f"{sandbox}/_phasegate/calls", timeout=10).json() == []
