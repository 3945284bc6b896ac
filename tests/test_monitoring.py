"""monitoring.enable against the sandbox over HTTP: the topic and its subscriptions, a dashboard
widget per component, at least 10 alarms wired to the topic and tagged for the environment,
the budget with its 2 notifications, the log metric filter and its alarm; a re-run writes
nothing; rollback removes every part."""

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import write_environment

from phasegate.config import EnvironmentConfig, parse_environment
from phasegate.cost import load_price_table
from phasegate.lifecycle import execute, plan, undo
from phasegate.sandbox.app import is_mutating
from phasegate.steps import CREATED_BY_TAG, StepContext
from tasks.monitoring import MonitoringEnable

TOPIC = "arn:aws:sns:us-east-1:123456789012:demo-alerts"


def mutating_calls(sandbox: str) -> list[str]:
    calls = requests.get(f"{sandbox}/_phasegate/calls", timeout=10).json()
    return [f"{c['service']}:{c['action']}" for c in calls if is_mutating(c["action"])]


def clear_calls(sandbox: str) -> None:
    requests.delete(f"{sandbox}/_phasegate/calls", timeout=10).raise_for_status()


@pytest.fixture
def config(seeded: EnvironmentConfig, sandbox: str, tmp_path: Path) -> EnvironmentConfig:
    return parse_environment(
        write_environment(
            tmp_path, "demo", sandbox,
            monitoring={"emails": ["ops@example.com"],
                        "https_endpoints": ["https://hooks.example.com/alerts"]},
        )
    )  # fmt: skip


def alarms(ctx: StepContext) -> dict[str, dict[str, Any]]:
    found = ctx.clients.cloudwatch.describe_alarms(AlarmNamePrefix="demo-")["MetricAlarms"]
    return {a["AlarmName"]: a for a in found}


def snapshot(ctx: StepContext) -> dict[str, Any]:
    """Every monitoring resource the account shows, for before/after comparisons."""
    c = ctx.clients
    return {
        "topics": sorted(t["TopicArn"] for t in c.sns.list_topics()["Topics"]),
        "dashboards": sorted(d["DashboardName"] for d in c.cloudwatch.list_dashboards()[
            "DashboardEntries"]),
        "alarms": sorted(alarms(ctx)),
        "budgets": sorted(b["BudgetName"] for b in c.budgets.describe_budgets(
            AccountId="123456789012").get("Budgets", [])),
        "filters": c.logs.describe_metric_filters(logGroupName="/ecs/demo-api")["metricFilters"],
    }  # fmt: skip


def test_monitoring_enable_end_to_end(config: EnvironmentConfig, sandbox: str) -> None:
    ctx = StepContext.for_environment(config)
    step = MonitoringEnable(ctx)
    before = snapshot(ctx)
    clear_calls(sandbox)

    change = plan(step)

    assert mutating_calls(sandbox) == []
    assert change is not None
    n_alarms = len(change.desired["alarms"])
    rates = load_price_table("us-east-1").monitoring
    expected = (
        n_alarms * rates.alarm_month.usd
        + rates.dashboard_month.usd
        + (rates.custom_metric_month.usd)
    )
    assert change.monthly_cost_delta == pytest.approx(expected, abs=0.01)
    assert 4 < change.monthly_cost_delta < 10  # a few dollars, shown

    record = execute(step, key="t")
    assert record.outcome == "applied"
    # CloudWatch signs as "monitoring"; its IAM actions are "cloudwatch:...".
    used = {a.replace("monitoring:", "cloudwatch:", 1) for a in record.api_actions}
    assert used <= set(step.iam_actions)
    c = ctx.clients

    # The topic, tagged, with both subscriptions.
    topic_tags = {t["Key"]: t["Value"] for t in c.sns.list_tags_for_resource(
        ResourceArn=TOPIC)["Tags"]}  # fmt: skip
    assert topic_tags == {"Environment": "demo", CREATED_BY_TAG: "monitoring.enable"}
    subs = c.sns.list_subscriptions_by_topic(TopicArn=TOPIC)["Subscriptions"]
    assert sorted((s["Protocol"], s["Endpoint"]) for s in subs) == [
        ("email", "ops@example.com"), ("https", "https://hooks.example.com/alerts")]  # fmt: skip

    # The dashboard: a widget per component.
    body = json.loads(c.cloudwatch.get_dashboard(DashboardName="demo-overview")["DashboardBody"])
    titles = [w["properties"]["title"] for w in body["widgets"]]
    assert titles == [
        "ALB requests", "ALB 4xx / 5xx", "ALB latency p50 / p99",
        "Compute CPU / memory / running tasks", "RDS CPU / connections / free storage",
        "Redis CPU / memory / evictions",
    ]  # fmt: skip
    latency = body["widgets"][2]["properties"]["metrics"]
    assert [m[-1]["stat"] for m in latency] == ["p50", "p99"]

    # At least 10 alarms, each wired to the topic both ways and tagged for the environment.
    found = alarms(ctx)
    assert len(found) >= 10
    for name, alarm in found.items():
        assert alarm["AlarmActions"] == [TOPIC] and alarm["OKActions"] == [TOPIC], name
        tags = {t["Key"]: t["Value"] for t in c.cloudwatch.list_tags_for_resource(
            ResourceARN=alarm["AlarmArn"])["Tags"]}  # fmt: skip
        assert tags == {"Environment": "demo", CREATED_BY_TAG: "monitoring.enable"}, name
    for name in ("demo-alb-target-5xx", "demo-alb-elb-5xx", "demo-alb-unhealthy-hosts",
                 "demo-compute-cpu", "demo-rds-demo-db-cpu", "demo-rds-demo-db-free-storage",
                 "demo-rds-demo-db-connections", "demo-redis-demo-redis-001-memory",
                 "demo-redis-demo-redis-001-evictions", "demo-scaling-at-max",
                 "demo-log-errors"):  # fmt: skip
        assert name in found
    p99 = found["demo-alb-p99-latency"]
    assert (p99["MetricName"], p99["ExtendedStatistic"], p99["Threshold"]) == (
        "TargetResponseTime", "p99", 1.0)  # fmt: skip
    # db.t3.micro: 1024 MiB / 9.09 MiB = 112 connections; the alarm fires at 80%.
    assert found["demo-rds-demo-db-connections"]["Threshold"] == 90
    at_max = found["demo-scaling-at-max"]
    assert (at_max["MetricName"], at_max["Threshold"]) == ("RunningTaskCount", 6)

    # The budget: the priced total + 20%, filtered by the cost-allocation tag, 2 notifications.
    budget = c.budgets.describe_budget(AccountId="123456789012", BudgetName="demo-monthly")[
        "Budget"
    ]
    priced = ctx.monthly_cost(ctx.inventory())
    assert float(budget["BudgetLimit"]["Amount"]) == pytest.approx(priced * 1.2, abs=0.01)
    assert budget["CostFilters"] == {"TagKeyValue": ["user:Environment$demo"]}
    notes = c.budgets.describe_notifications_for_budget(
        AccountId="123456789012", BudgetName="demo-monthly"
    )["Notifications"]
    assert sorted((n["NotificationType"], n["Threshold"]) for n in notes) == [
        ("ACTUAL", 100), ("FORECASTED", 80)]  # fmt: skip
    for note in notes:
        subscribers = c.budgets.describe_subscribers_for_notification(
            AccountId="123456789012", BudgetName="demo-monthly", Notification=note
        )["Subscribers"]
        assert subscribers == [{"SubscriptionType": "SNS", "Address": TOPIC}]

    # Error tracking: the metric filter on the service's log group, and its alarm.
    [metric_filter] = c.logs.describe_metric_filters(logGroupName="/ecs/demo-api")["metricFilters"]
    assert metric_filter["filterName"] == "demo-errors"
    assert (
        "ERROR" in metric_filter["filterPattern"] and '" 503 "' in (metric_filter["filterPattern"])
    )
    [transform] = metric_filter["metricTransformations"]
    errors_alarm = found["demo-log-errors"]
    assert (errors_alarm["Namespace"], errors_alarm["MetricName"]) == (
        transform["metricNamespace"], transform["metricName"])  # fmt: skip

    # A second run writes nothing.
    clear_calls(sandbox)
    assert execute(MonitoringEnable(ctx), key="t").outcome == "unchanged"
    assert mutating_calls(sandbox) == []

    # Rollback removes every part.
    undo(step)
    assert snapshot(ctx) == before


def test_a_new_budget_amount_updates_the_budget_and_rollback_walks_back(
    config: EnvironmentConfig, sandbox: str, tmp_path: Path
) -> None:
    ctx = StepContext.for_environment(config)
    execute(MonitoringEnable(ctx), key="t")
    richer = parse_environment(
        write_environment(
            tmp_path,
            "demo",
            sandbox,
            monitoring={**config.monitoring.model_dump(), "monthly_budget_usd": 350},
        )
    )
    ctx2 = StepContext.for_environment(richer)
    clear_calls(sandbox)

    record = execute(MonitoringEnable(ctx2), key="t2")

    assert record.outcome == "applied"
    assert "budgets:UpdateBudget" in mutating_calls(sandbox)
    assert "budgets:CreateBudget" not in mutating_calls(sandbox)
    budget = ctx2.clients.budgets.describe_budget(
        AccountId="123456789012", BudgetName="demo-monthly"
    )
    assert budget["Budget"]["BudgetLimit"]["Amount"] == "350.00"

    undo(MonitoringEnable(ctx2))

    assert ctx2.clients.budgets.describe_budgets(AccountId="123456789012").get("Budgets", []) == []
    assert alarms(ctx2) == {}


def test_an_alarm_changed_by_hand_is_drift(config: EnvironmentConfig) -> None:
    ctx = StepContext.for_environment(config)
    step = MonitoringEnable(ctx)
    record = execute(step, key="t")
    ctx.clients.cloudwatch.delete_alarms(AlarmNames=["demo-compute-cpu"])

    from phasegate.lifecycle import condition

    verdict, error = condition(step, record)

    assert verdict == "drifted"
    assert error is not None and "demo.alarms" in error.diff


def test_a_failure_mid_apply_is_resumed_or_rolled_back_from_its_progress(
    config: EnvironmentConfig, sandbox: str
) -> None:
    """CreateBudget refused after the topic, dashboard and alarms exist: the ledger holds the
    progress, a rollback removes exactly that, and a re-run resumes to the end."""
    from phasegate.ledger import Ledger
    from phasegate.lifecycle import StepFailed

    ctx = StepContext.for_environment(config)
    before = snapshot(ctx)
    fault = {"action": "CreateBudget", "code": "AccessDeniedException", "status": 400}
    requests.post(f"{sandbox}/_phasegate/faults", json=fault, timeout=10).raise_for_status()

    with pytest.raises(StepFailed, match="CreateBudget"):
        execute(MonitoringEnable(ctx), key="t")

    requests.delete(f"{sandbox}/_phasegate/faults", timeout=10).raise_for_status()
    half = snapshot(ctx)
    assert half["alarms"] and half["dashboards"] and half["budgets"] == []
    outcomes = [r.outcome for r in Ledger(config).chain(2, "monitoring.enable")]
    assert outcomes[0] == "intent" and "applied" not in outcomes and "progress" in outcomes

    undo(MonitoringEnable(ctx))
    assert snapshot(ctx) == before

    resumed = execute(MonitoringEnable(ctx), key="t2")
    assert resumed.outcome == "applied"
    assert snapshot(ctx)["budgets"] == ["demo-monthly"]
