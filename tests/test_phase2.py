"""Phase 2 end to end against the sandbox over HTTP and a real Prefect server, on both compute
targets: what the AWS APIs show after the phase, no mutating call on a second run, rollback
back to the inventory from before, and a phase 2 alarm in ALARM failing the health gate."""

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import write_environment
from flowruns import FlowThread, stop_all
from prefect.flow_runs import resume_flow_run

from flows.migration import migration
from flows.phase2 import phase2
from flows.rollback import rollback_phase
from phasegate.checkpoints import checkpoint_storage
from phasegate.config import EnvironmentConfig, parse_environment
from phasegate.inventory import discover
from phasegate.lifecycle import execute
from phasegate.report import MigrationFailed, MigrationReport
from phasegate.sandbox.app import is_mutating
from phasegate.sandbox.simulator import WorkloadSimulator
from phasegate.steps import StepContext
from tasks.approvals import resume_with
from tasks.compute import GravitonCompute

# Flows on a real Prefect server: minutes on a loaded 2-core machine, not seconds.
pytestmark = [pytest.mark.usefixtures("prefect_client_env"), pytest.mark.timeout(600)]

FAST_GATE = {"interval_seconds": 0.2, "count": 3, "lookback_minutes": 5}
TOPIC = "arn:aws:sns:us-east-1:123456789012:demo-alerts"
ACCOUNT = "123456789012"


def mutating_calls(sandbox: str) -> list[str]:
    calls = requests.get(f"{sandbox}/_phasegate/calls", timeout=10).json()
    return [f"{c['service']}:{c['action']}" for c in calls if is_mutating(c["action"])]


def clear_calls(sandbox: str) -> None:
    requests.delete(f"{sandbox}/_phasegate/calls", timeout=10).raise_for_status()


def phase2_inventory(config: EnvironmentConfig) -> dict[str, Any]:
    """Everything phase 2 touches, as the AWS APIs show it, plus discovery's inventory."""
    c = StepContext.for_environment(config).clients
    aas = c.client("application-autoscaling")
    groups = c.autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
    db = c.rds.describe_db_instances(DBInstanceIdentifier="demo-db")["DBInstances"][0]
    return {
        "scalable_targets": [
            (t["ResourceId"], t["MinCapacity"], t["MaxCapacity"])
            for t in aas.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
        ],
        "ecs_policies": sorted(
            p["PolicyName"]
            for p in aas.describe_scaling_policies(ServiceNamespace="ecs")["ScalingPolicies"]
        ),
        "groups": [
            (
                g["AutoScalingGroupName"],
                g["MinSize"],
                g["MaxSize"],
                sorted(m["Metric"] for m in g.get("EnabledMetrics", [])),
            )
            for g in groups
        ],
        "asg_policies": sorted(
            p["PolicyName"] for p in c.autoscaling.describe_policies()["ScalingPolicies"]
        ),
        "topics": sorted(t["TopicArn"] for t in c.sns.list_topics()["Topics"]),
        "dashboards": [
            d["DashboardName"] for d in c.cloudwatch.list_dashboards()["DashboardEntries"]
        ],
        "alarms": sorted(a["AlarmName"] for a in c.cloudwatch.describe_alarms()["MetricAlarms"]),
        "budgets": [
            b["BudgetName"]
            for b in c.budgets.describe_budgets(AccountId=ACCOUNT).get("Budgets", [])
        ],
        "filters": c.logs.describe_metric_filters(logGroupName="/ecs/demo-api")["metricFilters"],
        "parameter_groups": sorted(
            g["DBParameterGroupName"]
            for g in c.rds.describe_db_parameter_groups()["DBParameterGroups"]
        ),
        # The group attached; its apply status is AWS's to report (a group switched back
        # without a reboot is pending-reboot, as on AWS: see the rollback tests).
        "attached": [g["DBParameterGroupName"] for g in db["DBParameterGroups"]],
        "inventory": discover(config).model_dump(),
    }


def run_phase2(config: EnvironmentConfig) -> None:
    with checkpoint_storage(config):
        phase2(str(config.source))


def roll_back(config: EnvironmentConfig) -> None:
    with checkpoint_storage(config):
        rollback_phase(str(config.source), 2)


def assert_phase2_shows_in_aws(config: EnvironmentConfig) -> None:
    c = StepContext.for_environment(config).clients
    dashboard = c.cloudwatch.get_dashboard(DashboardName="demo-overview")["DashboardBody"]
    for component in ("ALB requests", "Compute", "RDS", "Redis"):
        assert component in dashboard
    alarms = c.cloudwatch.describe_alarms(AlarmNamePrefix="demo-")["MetricAlarms"]
    wired = [a for a in alarms if a["AlarmActions"] == [TOPIC] and a["OKActions"] == [TOPIC]]
    assert len(wired) >= 10
    notes = c.budgets.describe_notifications_for_budget(
        AccountId=ACCOUNT, BudgetName="demo-monthly"
    )["Notifications"]
    assert len(notes) == 2
    [metric_filter] = c.logs.describe_metric_filters(logGroupName="/ecs/demo-api")["metricFilters"]
    assert "demo-log-errors" in {a["AlarmName"] for a in alarms}
    assert metric_filter["filterName"] == "demo-errors"
    db = c.rds.describe_db_instances(DBInstanceIdentifier="demo-db")["DBInstances"][0]
    group = db["DBParameterGroups"][0]["DBParameterGroupName"]
    assert group == "demo-db-postgres16-connections"
    values = {
        p["ParameterName"]: p["ParameterValue"]
        for p in c.rds.describe_db_parameters(DBParameterGroupName=group)["Parameters"]
    }
    assert values == {
        "max_connections": "112",
        "idle_in_transaction_session_timeout": "60000",
        "tcp_keepalives_idle": "60",
        "log_min_duration_statement": "1000",
    }


@pytest.fixture
def ecs_config(seeded: EnvironmentConfig, sandbox: str, tmp_path: Path) -> EnvironmentConfig:
    return parse_environment(write_environment(tmp_path, "demo", sandbox, gates=FAST_GATE))


def test_phase2_on_ecs_rerun_and_rollback(ecs_config: EnvironmentConfig, sandbox: str) -> None:
    before = phase2_inventory(ecs_config)

    run_phase2(ecs_config)

    assert_phase2_shows_in_aws(ecs_config)
    after = phase2_inventory(ecs_config)
    assert after["scalable_targets"] == [("service/demo-cluster/demo-api", 2, 6)]
    assert after["ecs_policies"] == ["demo-cpu", "demo-requests"]

    clear_calls(sandbox)
    run_phase2(ecs_config)
    assert mutating_calls(sandbox) == []

    roll_back(ecs_config)
    assert phase2_inventory(ecs_config) == before
    db = StepContext.for_environment(ecs_config).clients.rds.describe_db_instances()
    # Switching back to the old group waits for a reboot too (database.reboot: never).
    assert db["DBInstances"][0]["DBParameterGroups"][0]["ParameterApplyStatus"] == (
        "pending-reboot"
    )


def test_phase2_on_ec2_rerun_and_rollback(
    seeded: EnvironmentConfig, sandbox: str, tmp_path: Path
) -> None:
    config = parse_environment(
        write_environment(tmp_path, "demo", sandbox, targets={"compute": "ec2-asg-graviton"})
    )
    execute(GravitonCompute(StepContext.for_environment(config)), key="phase 1")
    before = phase2_inventory(config)

    run_phase2(config)

    assert_phase2_shows_in_aws(config)
    after = phase2_inventory(config)
    assert after["groups"] == [
        ("demo-app-graviton", 1, 5, ["GroupDesiredCapacity", "GroupInServiceInstances"])
    ]
    assert after["asg_policies"] == ["demo-cpu", "demo-requests"]
    assert after["scalable_targets"] == []
    c = StepContext.for_environment(config).clients
    at_max = c.cloudwatch.describe_alarms(AlarmNames=["demo-scaling-at-max"])["MetricAlarms"][0]
    assert (at_max["Namespace"], at_max["MetricName"], at_max["Threshold"]) == (
        "AWS/AutoScaling", "GroupInServiceInstances", 5)  # fmt: skip

    clear_calls(sandbox)
    run_phase2(config)
    assert mutating_calls(sandbox) == []

    roll_back(config)
    assert phase2_inventory(config) == before


@pytest.fixture
def healthy(tmp_path: Path) -> Iterator[list[EnvironmentConfig]]:
    configs: list[EnvironmentConfig] = []
    sim = WorkloadSimulator(lambda: configs, tick_seconds=0.3, faults_file=tmp_path / "faults.json")
    sim.start()
    yield configs
    sim.stop()


def alarm_when_created(config: EnvironmentConfig, name: str) -> threading.Thread:
    """Push `name` into ALARM as soon as phase 2 creates it (so during the gate)."""
    cloudwatch = StepContext.for_environment(config).clients.cloudwatch

    def watch() -> None:
        for _ in range(1200):
            if cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]:
                cloudwatch.set_alarm_state(
                    AlarmName=name, StateValue="ALARM", StateReason="test: 5xx burst"
                )
                return
            threading.Event().wait(0.1)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_phase2_alarm_in_alarm_fails_the_gate_and_rolls_back(
    ecs_config: EnvironmentConfig, healthy: list[EnvironmentConfig]
) -> None:
    healthy.append(ecs_config)
    before = phase2_inventory(ecs_config)
    watcher = alarm_when_created(ecs_config, "demo-alb-target-5xx")

    with pytest.raises(MigrationFailed) as failed, checkpoint_storage(ecs_config):
        migration(str(ecs_config.source), phases=[2])

    watcher.join(timeout=10)
    [two] = failed.value.report.phases
    assert (two.status, two.gate) == ("rolled back", "fail")
    assert "alarms" in two.gate_reason
    assert phase2_inventory(ecs_config) == before


def test_a_phase2_alarm_with_on_failure_pause_waits_for_the_operator(
    seeded: EnvironmentConfig, sandbox: str, tmp_path: Path, healthy: list[EnvironmentConfig]
) -> None:
    config = parse_environment(
        write_environment(tmp_path, "demo", sandbox, gates={**FAST_GATE, "on_failure": "pause"})
    )
    healthy.append(config)
    before = phase2_inventory(config)
    alarm_when_created(config, "demo-rds-demo-db-cpu")

    def run() -> MigrationReport:
        with checkpoint_storage(config):
            return migration(str(config.source), phases=[2])

    bg = FlowThread(run, label=config.name)
    try:
        bg.wait_paused(timeout=240)
        assert phase2_inventory(config)["alarms"], (
            "phase 2 stays applied while the operator decides"
        )
        resume_flow_run(bg.run_id, run_input={"approved": False, "approver": "ops",
                                               "comment": "RDS CPU alarm"})  # fmt: skip
        bg.join(timeout=180)
    finally:
        stop_all([bg], lambda run_id: resume_with(run_id, False, "test-teardown"), timeout=180)
    assert isinstance(bg.error, MigrationFailed)
    [two] = bg.error.report.phases
    assert (two.status, two.gate) == ("rolled back", "fail")
    assert "ops" in two.detail and "alarms" in two.detail
    assert phase2_inventory(config) == before
