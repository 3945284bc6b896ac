"""Health gates against the seeded sandbox, with the gate metrics published here.

moto emits no AWS/* metric, so each test publishes what a running platform would (with
put_metric_data, on AWS's namespaces, names and dimensions) and the gate reads it back over
HTTP through GetMetricData exactly as it would read CloudWatch. Rounds are 0.01 s apart.
"""

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import write_environment
from typer.testing import CliRunner

from phasegate.aws import AwsClients
from phasegate.config import AwsSettings, EnvironmentConfig, Gates, parse_environment
from phasegate.gates import (
    GateResult,
    HealthGate,
    load_balancer_dimension,
    render_markdown,
    target_group_dimension,
)
from phasegate.inventory import discover

FAST = {"interval_seconds": 0.01, "count": 3}


def fast(config: EnvironmentConfig, **gates: Any) -> EnvironmentConfig:
    return config.model_copy(update={"gates": Gates(**{**FAST, **gates})})


def publish(
    config: EnvironmentConfig,
    *,
    minutes: int = 5,
    requests_per_minute: int = 1000,
    errors_per_minute: int | None = 2,
    latency: float = 0.12,
    healthy_hosts: int = 2,
    rds_cpu: float = 30.0,
    redis_cpu: float = 30.0,
    db_connections: float = 12.0,
    evictions: float = 0.0,
    redis_memory: float = 35.0,
    elb_errors_per_minute: int | None = None,
    now: datetime | None = None,
) -> None:
    """A platform's last `minutes` (before `now`, default the wall clock) of gate metrics;
    None errors = no 5xx datapoint at all."""
    inventory = discover(config)
    now = now or datetime.now(UTC)
    data: dict[str, list[dict[str, Any]]] = {
        "AWS/ApplicationELB": [],
        "AWS/RDS": [],
        "AWS/ElastiCache": [],
    }

    def datum(namespace: str, name: str, value: float, at: datetime, **dims: str) -> None:
        data[namespace].append(
            {
                "MetricName": name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
                "Timestamp": at,
                "Value": value,
            }
        )

    for k in range(minutes):
        at = now - timedelta(seconds=20 + 60 * k)
        for lb in inventory.load_balancers:
            lb_dim = load_balancer_dimension(lb.arn)
            alb = "AWS/ApplicationELB"
            datum(alb, "RequestCount", requests_per_minute, at, LoadBalancer=lb_dim)
            if errors_per_minute is not None:
                datum(alb, "HTTPCode_Target_5XX_Count", errors_per_minute, at, LoadBalancer=lb_dim)
            datum(alb, "TargetResponseTime", latency, at, LoadBalancer=lb_dim)
            if elb_errors_per_minute is not None:
                datum(alb, "HTTPCode_ELB_5XX_Count", elb_errors_per_minute, at, LoadBalancer=lb_dim)
            for tg in lb.target_groups:
                tg_dim = target_group_dimension(tg.arn)
                datum(
                    alb, "HealthyHostCount", healthy_hosts, at, TargetGroup=tg_dim,
                    LoadBalancer=lb_dim,
                )  # fmt: skip
        for db in inventory.databases:
            datum("AWS/RDS", "CPUUtilization", rds_cpu, at, DBInstanceIdentifier=db.identifier)
            datum(
                "AWS/RDS", "DatabaseConnections", db_connections, at,
                DBInstanceIdentifier=db.identifier,
            )  # fmt: skip
        for cache in inventory.caches:
            for member in cache.member_clusters:
                cache_ns = "AWS/ElastiCache"
                datum(cache_ns, "CPUUtilization", redis_cpu, at, CacheClusterId=member)
                datum(cache_ns, "Evictions", evictions, at, CacheClusterId=member)
                datum(
                    cache_ns, "DatabaseMemoryUsagePercentage", redis_memory, at,
                    CacheClusterId=member,
                )  # fmt: skip
    cloudwatch = AwsClients(config.aws).cloudwatch
    for namespace, datums in data.items():
        if datums:
            cloudwatch.put_metric_data(Namespace=namespace, MetricData=datums)


def run_gate(config: EnvironmentConfig) -> GateResult:
    sleeps: list[float] = []
    result = HealthGate(config).evaluate(sleep=sleeps.append)
    assert sleeps == [config.gates.interval_seconds] * (len(result.rounds) - 1)
    return result


def statuses(result: GateResult, round_index: int = 0) -> dict[tuple[str, str], str]:
    return {(c.name, c.resource): c.status for c in result.rounds[round_index].checks}


def test_healthy_environment_passes_every_check_every_round(seeded: EnvironmentConfig) -> None:
    publish(seeded)
    result = run_gate(fast(seeded))

    assert result.verdict == "pass", result.reason
    assert len(result.rounds) == 3 and (result.failures, result.inconclusives) == (0, 0)
    checks = statuses(result)
    assert set(checks.values()) == {"pass"}
    assert set(checks) == {
        ("alb-5xx-ratio", "demo-alb"),
        ("alb-elb-5xx-ratio", "demo-alb"),
        ("alb-response-time", "demo-alb"),
        ("healthy-hosts", "demo-app"),
        ("ecs-running", "demo-cluster/demo-api"),
        ("rds-status", "demo-db"),
        ("rds-cpu", "demo-db"),
        ("rds-connections", "demo-db"),
        ("redis-status", "demo-redis"),
        *{
            (name, m)
            for m in discover(seeded).caches[0].member_clusters
            for name in ("redis-cpu", "redis-evictions", "redis-memory")
        },
        ("alarms", "demo"),
    }
    by_name = {c.name: c for c in result.rounds[0].checks}
    assert by_name["alb-5xx-ratio"].value == pytest.approx(0.002)
    assert by_name["alb-response-time"].value == pytest.approx(0.12)
    assert by_name["healthy-hosts"].value == 2
    assert by_name["rds-cpu"].value == pytest.approx(30.0)


def test_one_get_metric_data_call_per_round(seeded: EnvironmentConfig, sandbox: str) -> None:
    publish(seeded)
    requests.delete(f"{sandbox}/_phasegate/calls", timeout=10).raise_for_status()
    result = run_gate(fast(seeded))
    calls = requests.get(f"{sandbox}/_phasegate/calls", timeout=10).json()
    assert [c["action"] for c in calls].count("GetMetricData") == len(result.rounds) == 3


def test_missing_5xx_series_with_requests_means_zero_errors(seeded: EnvironmentConfig) -> None:
    publish(seeded, errors_per_minute=None)  # AWS omits 5xx datapoints for error-free minutes
    result = run_gate(fast(seeded))
    assert result.verdict == "pass", result.reason
    ratio = next(c for c in result.rounds[0].checks if c.name == "alb-5xx-ratio")
    assert (ratio.status, ratio.value) == ("pass", 0.0)


def test_5xx_at_20_percent_fails_naming_the_alb(seeded: EnvironmentConfig) -> None:
    publish(seeded, errors_per_minute=200)
    result = run_gate(fast(seeded))

    assert result.verdict == "fail"
    assert len(result.rounds) == 1  # failure_limit 0: the first failure ends the gate
    assert statuses(result)[("alb-5xx-ratio", "demo-alb")] == "fail"
    assert "alb-5xx-ratio on demo-alb" in result.reason and "0.2" in result.reason
    assert result.failures == 1


def test_latency_of_2_5_seconds_fails(seeded: EnvironmentConfig) -> None:
    publish(seeded, latency=2.5)
    result = run_gate(fast(seeded))
    assert result.verdict == "fail"
    assert statuses(result)[("alb-response-time", "demo-alb")] == "fail"
    assert "alb-response-time on demo-alb" in result.reason and "2.5" in result.reason


def test_failure_limit_tolerates_that_many_failed_measurements(
    seeded: EnvironmentConfig,
) -> None:
    publish(seeded, latency=2.5)
    result = run_gate(fast(seeded, failure_limit=1))
    assert result.verdict == "fail" and len(result.rounds) == 2
    assert "failed 2 time(s), above failure_limit 1" in result.reason


@pytest.mark.parametrize(("limit", "rounds_run"), [(0, 1), (1, 2)])
def test_no_data_is_inconclusive_and_fails_at_the_limit(
    seeded: EnvironmentConfig, limit: int, rounds_run: int
) -> None:
    result = run_gate(fast(seeded, inconclusive_limit=limit, count=3))

    assert result.verdict == "fail"
    assert len(result.rounds) == rounds_run
    checks = statuses(result)
    for metric_check in ("alb-5xx-ratio", "alb-response-time", "rds-cpu"):
        assert {s for (n, _), s in checks.items() if n == metric_check} == {"inconclusive"}
    assert checks[("healthy-hosts", "demo-app")] == "inconclusive"
    assert checks[("rds-status", "demo-db")] == "pass"  # status reads need no metrics
    assert f"above inconclusive_limit {limit}" in result.reason
    assert "no AWS/ApplicationELB RequestCount datapoints" in result.reason


def test_no_data_never_passes_even_within_the_limits(seeded: EnvironmentConfig) -> None:
    result = run_gate(fast(seeded, inconclusive_limit=10, count=3))
    assert result.verdict == "fail" and len(result.rounds) == 3
    assert "alb-5xx-ratio on demo-alb never passed" in result.reason


def test_requests_of_zero_are_inconclusive(seeded: EnvironmentConfig) -> None:
    publish(seeded, requests_per_minute=0, errors_per_minute=None)
    result = run_gate(fast(seeded, inconclusive_limit=0))
    assert result.verdict == "fail"
    assert statuses(result)[("alb-5xx-ratio", "demo-alb")] == "inconclusive"


def test_no_healthy_hosts_fails(seeded: EnvironmentConfig) -> None:
    publish(seeded, healthy_hosts=0)
    result = run_gate(fast(seeded))
    assert result.verdict == "fail"
    assert statuses(result)[("healthy-hosts", "demo-app")] == "fail"
    assert "healthy-hosts on demo-app" in result.reason


def _alarm(config: EnvironmentConfig, name: str, **kw: Any) -> None:
    AwsClients(config.aws).cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/ApplicationELB",
        MetricName="HTTPCode_Target_5XX_Count",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=10,
        ComparisonOperator="GreaterThanThreshold",
        **kw,
    )


def test_an_alarm_of_the_environment_in_alarm_fails(seeded: EnvironmentConfig) -> None:
    publish(seeded)
    _alarm(seeded, "demo-5xx", Tags=[{"Key": "Environment", "Value": "demo"}])
    _alarm(seeded, "other-env-5xx")  # not the environment's: ignored even in ALARM
    cloudwatch = AwsClients(seeded.aws).cloudwatch
    cloudwatch.set_alarm_state(AlarmName="other-env-5xx", StateValue="ALARM", StateReason="t")
    assert run_gate(fast(seeded)).verdict == "pass"

    cloudwatch.set_alarm_state(AlarmName="demo-5xx", StateValue="ALARM", StateReason="test")
    result = run_gate(fast(seeded))
    assert result.verdict == "fail"
    assert statuses(result)[("alarms", "demo")] == "fail"
    assert "in ALARM: demo-5xx" in result.reason


def test_an_alarm_tagged_for_the_environment_counts_too(seeded: EnvironmentConfig) -> None:
    publish(seeded)
    _alarm(seeded, "latency-high", Tags=[{"Key": "Environment", "Value": "demo"}])
    AwsClients(seeded.aws).cloudwatch.set_alarm_state(
        AlarmName="latency-high", StateValue="ALARM", StateReason="test"
    )
    result = run_gate(fast(seeded))
    assert result.verdict == "fail" and "in ALARM: latency-high" in result.reason


def test_rds_cpu_of_95_percent_fails(seeded: EnvironmentConfig) -> None:
    publish(seeded, rds_cpu=95.0)
    result = run_gate(fast(seeded))
    assert result.verdict == "fail"
    assert statuses(result)[("rds-cpu", "demo-db")] == "fail"
    assert statuses(result)[("redis-cpu", discover(seeded).caches[0].member_clusters[0])] == "pass"
    assert "rds-cpu on demo-db" in result.reason and "95" in result.reason


def test_a_stopped_database_fails(seeded: EnvironmentConfig) -> None:
    publish(seeded)
    AwsClients(seeded.aws).rds.stop_db_instance(DBInstanceIdentifier="demo-db")
    result = run_gate(fast(seeded))
    assert result.verdict == "fail"
    assert statuses(result)[("rds-status", "demo-db")] == "fail"
    assert "stopped" in result.reason


def test_pinned_clock_reads_the_window_before_it(seeded: EnvironmentConfig) -> None:
    """`now` pins the window a round reads: metrics of a fixed moment pass a gate pinned then,
    and are no data for a gate pinned before them or reading up to the wall clock."""
    past = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    publish(seeded, latency=0.25, now=past)  # 5 minutes ending 20 s before `past`
    gate = HealthGate(fast(seeded, inconclusive_limit=0))

    pinned = gate.evaluate(now=past, sleep=lambda _: None)
    assert pinned.verdict == "pass", pinned.reason
    # round N reads the window ending at past + (N - 1) * interval_seconds (0.01 s)
    assert [r.at for r in pinned.rounds] == [
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 10_000, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 20_000, tzinfo=UTC),
    ]
    latency = next(c for c in pinned.rounds[0].checks if c.name == "alb-response-time")
    assert latency.value == pytest.approx(0.25)  # what was published at that time

    before = gate.evaluate(now=past - timedelta(minutes=10), sleep=lambda _: None)
    assert before.verdict == "fail"
    assert statuses(before)[("alb-response-time", "demo-alb")] == "inconclusive"
    assert "no AWS/ApplicationELB RequestCount datapoints" in before.reason

    wall_clock = gate.evaluate(sleep=lambda _: None)  # the window ends now: nothing in it
    assert wall_clock.verdict == "fail"
    assert statuses(wall_clock)[("alb-response-time", "demo-alb")] == "inconclusive"


def test_markdown_has_a_table_per_round(seeded: EnvironmentConfig) -> None:
    publish(seeded, latency=2.5)
    result = run_gate(fast(seeded, failure_limit=1))
    text = render_markdown(result)

    assert text.startswith("# Health gate of `demo`: **FAIL**")
    assert text.count("| check | resource | status | value | threshold | detail |") == 2
    assert "## Round 1 " in text and "## Round 2 " in text
    assert "| alb-response-time | demo-alb | fail | 2.5 | <= 0.5 s |" in text
    assert "| rds-status | demo-db | pass | available | == available |" in text


def test_task_publishes_the_table_as_an_artifact(
    seeded: EnvironmentConfig, sandbox: str, tmp_path: Path, prefect_client_env: str
) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        LogFilter,
        LogFilterTaskRunId,
    )
    from prefect.logging.handlers import APILogHandler

    from tasks.gates import artifact_key, health_gate

    path = write_environment(tmp_path, "demo", sandbox, gates=FAST)
    publish(seeded, errors_per_minute=200)

    @flow
    def gate_flow(env: str) -> GateResult:
        return health_gate(env)

    state = gate_flow(str(path), return_state=True)  # a failed gate is returned, not raised
    result = state.result()
    APILogHandler().flush()  # send the run's logs now, while the session's API is up
    assert result.verdict == "fail" and "demo-alb" in result.reason

    assert artifact_key("Acme_Prod.2") == "gate-acme-prod-2"
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["gate-demo"]))
        )
    # This run's: other tests' runs of an environment named demo publish under the same key.
    [artifact] = [a for a in artifacts if a.flow_run_id == state.state_details.flow_run_id]
    assert artifact.type == "markdown" and artifact.task_run_id is not None
    assert "**FAIL**" in artifact.data and "| alb-5xx-ratio | demo-alb | fail |" in artifact.data

    # Each check is a structured log line of the task run, readable through the API.
    deadline = time.monotonic() + 15
    while True:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(
                log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[artifact.task_run_id]))
            )
        checks = [entry.message for entry in logs if "gate check" in entry.message]
        if len(checks) == len(result.rounds[0].checks) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(checks) == len(result.rounds[0].checks)
    failed = next(m for m in checks if "alb-5xx-ratio" in m)
    assert '"resource": "demo-alb"' in failed and '"environment": "demo"' in failed
    assert any(entry.name == "phasegate.gates" for entry in logs)


def test_cli_gate_exit_codes(seeded: EnvironmentConfig, sandbox: str, tmp_path: Path) -> None:
    from phasegate.cli import app

    path = write_environment(tmp_path, "demo", sandbox, gates=FAST)
    assert parse_environment(path).gates.count == 3
    runner = CliRunner()
    publish(seeded)

    ok = runner.invoke(app, ["gate", str(path)])
    assert ok.exit_code == 0, ok.output
    assert "Health gate of demo" in ok.stdout and "passed:" in ok.stdout
    assert "round 3/3" in ok.stderr

    as_json = runner.invoke(app, ["gate", str(path), "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["verdict"] == "pass"

    publish(seeded, latency=2.5)
    bad = runner.invoke(app, ["gate", str(path)])
    assert bad.exit_code == 1, bad.output
    assert "health gate of demo failed" in bad.stderr and "alb-response-time" in bad.stderr

    bad_json = runner.invoke(app, ["gate", str(path), "--json"])
    assert bad_json.exit_code == 1
    assert json.loads(bad_json.stdout)["verdict"] == "fail"

    missing = runner.invoke(app, ["gate", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2


# -- the sandbox's own workload simulator ---------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "verdict", "check", "status"),
    [
        (None, "pass", "healthy-hosts", "pass"),
        ("5xx", "fail", "alb-5xx-ratio", "fail"),
        ("latency", "fail", "alb-response-time", "fail"),
        ("unhealthy", "fail", "healthy-hosts", "fail"),
        ("nodata", "fail", "alb-5xx-ratio", "inconclusive"),
    ],
)
def test_gate_reads_what_the_workload_simulator_publishes(
    seeded: EnvironmentConfig, tmp_path: Path, fault: str | None, verdict: str, check: str,
    status: str,
) -> None:  # fmt: skip
    from phasegate.sandbox.simulator import WorkloadSimulator, set_fault

    faults = tmp_path / "faults.json"
    set_fault("demo", fault, faults)
    WorkloadSimulator(lambda: [seeded], backfill_minutes=10, faults_file=faults).tick()
    result = run_gate(fast(seeded, inconclusive_limit=0))

    assert result.verdict == verdict, result.reason
    assert {s for (n, _), s in statuses(result).items() if n == check} == {status}


def test_dimensions_are_the_final_portion_of_the_arn() -> None:
    base = "arn:aws:elasticloadbalancing:us-east-1:123456789012"
    assert load_balancer_dimension(f"{base}:loadbalancer/app/demo-alb/50dc6c495c0c9188") == (
        "app/demo-alb/50dc6c495c0c9188"
    )
    assert target_group_dimension(f"{base}:targetgroup/demo-app/73e2d6bc24d8a067") == (
        "targetgroup/demo-app/73e2d6bc24d8a067"
    )


def test_an_alarm_named_like_the_environment_but_tagged_for_another_is_not_its(
    sandbox: str, tmp_path: Path
) -> None:
    from phasegate.sandbox.seed import seed_environment

    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=sandbox))
    seed_environment(clients, "acme", 1)
    acme = parse_environment(write_environment(tmp_path, "acme", sandbox))
    publish(acme)
    _alarm(acme, "acme-prod-5xx", Tags=[{"Key": "Environment", "Value": "acme-prod"}])
    clients.cloudwatch.set_alarm_state(
        AlarmName="acme-prod-5xx", StateValue="ALARM", StateReason="test"
    )
    requests.delete(f"{sandbox}/_phasegate/calls", timeout=10).raise_for_status()
    result = HealthGate(fast(acme)).evaluate(sleep=lambda _: None)
    assert result.verdict == "pass", result.reason
    assert len(result.rounds) == 3
    assert {statuses(result, n)[("alarms", "acme")] for n in range(3)} == {"pass"}
    calls = requests.get(f"{sandbox}/_phasegate/calls", timeout=10).json()
    tag_reads = [c for c in calls if c["action"] == "ListTagsForResource"]
    assert [c["service"] for c in tag_reads if c["service"] != "elasticache"] == ["monitoring"]


def test_the_alb_answering_503_itself_fails_the_gate(
    seeded: EnvironmentConfig, tmp_path: Path
) -> None:
    from phasegate.sandbox.simulator import WorkloadSimulator, set_fault

    faults = tmp_path / "faults.json"
    set_fault("demo", "elb503", faults)
    WorkloadSimulator(lambda: [seeded], backfill_minutes=10, faults_file=faults).tick()
    result = run_gate(fast(seeded))
    assert result.verdict == "fail"
    checks = {c.name: c for c in result.rounds[0].checks}
    assert checks["alb-elb-5xx-ratio"].status == "fail"
    assert checks["alb-elb-5xx-ratio"].value == 1.0
    assert "alb-elb-5xx-ratio on demo-alb" in result.reason


@pytest.mark.parametrize(
    ("metrics", "check", "resource"),
    [
        ({"db_connections": 0}, "rds-connections", "demo-db"),
        ({"evictions": 5000}, "redis-evictions", None),
        ({"redis_memory": 97.0}, "redis-memory", None),
    ],
)
def test_data_store_damage_fails_the_gate(
    seeded: EnvironmentConfig, metrics: dict[str, float], check: str, resource: str | None
) -> None:
    publish(seeded, **metrics)  # type: ignore[arg-type]
    result = run_gate(fast(seeded))
    where = resource or discover(seeded).caches[0].member_clusters[0]
    assert result.verdict == "fail"
    assert statuses(result)[(check, where)] == "fail"
    assert f"{check} on {where}" in result.reason
