"""The workload simulator against a real moto server: what a gate would read back.

Every assertion reads CloudWatch through GetMetricData on AWS's own namespaces, metric names
and dimensions, exactly as a health gate does; nothing is inspected inside the simulator.
"""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from phasegate.aws import AwsClients
from phasegate.config import EnvironmentConfig
from phasegate.inventory import Inventory, discover
from phasegate.sandbox.server import faults_path
from phasegate.sandbox.simulator import WorkloadSimulator, read_faults, set_fault

T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)


@pytest.fixture(autouse=True)
def _own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test has its own faults file."""
    monkeypatch.setenv("PHASEGATE_HOME", str(tmp_path / "home"))


def _simulator(config: EnvironmentConfig, backfill_minutes: int = 1) -> WorkloadSimulator:
    return WorkloadSimulator(lambda: [config], backfill_minutes=backfill_minutes)


def _tick_minutes(sim: WorkloadSimulator, count: int, start: datetime = T0) -> None:
    for i in range(count):
        sim.tick(start + timedelta(minutes=i, seconds=5))


class Metrics:
    """GetMetricData on one environment, one minute per datapoint, oldest first."""

    def __init__(self, config: EnvironmentConfig) -> None:
        self.cloudwatch = AwsClients(config.aws).cloudwatch
        self.inventory: Inventory = discover(config)
        lb = self.inventory.load_balancers[0]
        self.lb = lb.arn.split(":loadbalancer/", 1)[1]
        self.tg = lb.target_groups[0].arn.split(":", 5)[5]  # targetgroup/NAME/ID, as AWS has it

    def series(
        self,
        namespace: str,
        name: str,
        stat: str,
        start: datetime = T0,
        minutes: int = 60,
        **dims: str,
    ) -> list[float]:
        query: dict[str, Any] = {
            "Id": "m",
            "MetricStat": {
                "Metric": {
                    "Namespace": namespace,
                    "MetricName": name,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
                },
                "Period": 60,
                "Stat": stat,
            },
        }
        [result] = self.cloudwatch.get_metric_data(
            MetricDataQueries=[query],
            StartTime=start,
            EndTime=start + timedelta(minutes=minutes),
            ScanBy="TimestampAscending",
        )["MetricDataResults"]
        return result["Values"]

    def alb(self, name: str, stat: str, **kw: Any) -> list[float]:
        return self.series("AWS/ApplicationELB", name, stat, LoadBalancer=self.lb, **kw)

    def target_group(self, name: str, stat: str, **kw: Any) -> list[float]:
        return self.series(
            "AWS/ApplicationELB", name, stat, TargetGroup=self.tg, LoadBalancer=self.lb, **kw
        )


def test_healthy_minutes_on_the_real_namespaces(seeded: EnvironmentConfig) -> None:
    sim = _simulator(seeded)
    _tick_minutes(sim, 3)
    assert sim.tick(T0 + timedelta(minutes=2, seconds=40)) == {"demo": 0}  # minute already sent

    m = Metrics(seeded)
    requests = m.alb("RequestCount", "Sum")
    assert len(requests) == 3 and all(950 <= v <= 1050 for v in requests)
    errors = m.alb("HTTPCode_Target_5XX_Count", "Sum")
    assert len(errors) == 3 and all(v in (0, 1, 2) for v in errors)
    latency = m.alb("TargetResponseTime", "Average")
    assert len(latency) == 3 and all(0.10 <= v <= 0.14 for v in latency)
    assert m.alb("TargetResponseTime", "SampleCount") == requests
    assert m.target_group("HealthyHostCount", "Average") == [2.0, 2.0, 2.0]  # running tasks
    assert m.target_group("UnHealthyHostCount", "Average") == [0.0, 0.0, 0.0]
    assert m.target_group("RequestCount", "Sum") == requests  # one target group takes all

    db = {"DBInstanceIdentifier": "demo-db"}
    cpu = m.series("AWS/RDS", "CPUUtilization", "Average", **db)
    assert len(cpu) == 3 and all(25 <= v <= 40 for v in cpu)
    assert len(m.series("AWS/RDS", "DatabaseConnections", "Average", **db)) == 3

    [cache] = m.inventory.caches
    assert cache.member_clusters == ["demo-redis-001", "demo-redis-002"]
    for member in cache.member_clusters:
        cpu = m.series("AWS/ElastiCache", "CPUUtilization", "Average", CacheClusterId=member)
        assert len(cpu) == 3 and all(25 <= v <= 40 for v in cpu)
        evictions = m.series("AWS/ElastiCache", "Evictions", "Sum", CacheClusterId=member)
        assert evictions == [0.0, 0.0, 0.0]

    assert len(m.inventory.nat_gateways) == 2
    for nat in m.inventory.nat_gateways:
        sent = m.series("AWS/NATGateway", "BytesOutToDestination", "Sum", NatGatewayId=nat.id)
        assert len(sent) == 3 and all(v > 0 for v in sent)

    [svc] = m.inventory.services
    ecs = m.series(
        "AWS/ECS", "CPUUtilization", "Average", ClusterName=svc.cluster, ServiceName=svc.name
    )
    assert len(ecs) == 3 and all(25 <= v <= 40 for v in ecs)


def test_first_tick_backfills_the_last_hour_and_jitter_is_deterministic(
    seeded: EnvironmentConfig,
) -> None:
    now = T0 + timedelta(minutes=5, seconds=30)
    _simulator(seeded, backfill_minutes=60).tick(now)

    m = Metrics(seeded)
    start = now.replace(second=0) - timedelta(minutes=59)
    requests = m.alb("RequestCount", "Sum", start=start - timedelta(minutes=5), minutes=70)
    assert len(requests) == 60
    assert len(set(requests)) > 10  # jittered, not flat

    again = _simulator(seeded).datapoints(m.inventory, T0)
    assert again == _simulator(seeded).datapoints(m.inventory, T0)


def test_metrics_follow_the_migration(seeded: EnvironmentConfig) -> None:
    sim = _simulator(seeded)
    _tick_minutes(sim, 1)
    m = Metrics(seeded)
    ec2 = AwsClients(seeded.aws).ec2
    removed, kept = m.inventory.nat_gateways
    ec2.delete_nat_gateway(NatGatewayId=removed.id)
    [svc] = m.inventory.services
    AwsClients(seeded.aws).ecs.update_service(cluster=svc.cluster, service=svc.name, desiredCount=3)
    _tick_minutes(sim, 1, start=T0 + timedelta(minutes=1))

    def nat(gateway: str) -> list[float]:
        return m.series("AWS/NATGateway", "BytesOutToDestination", "Sum", NatGatewayId=gateway)

    assert len(nat(removed.id)) == 1  # before the deletion only
    assert len(nat(kept.id)) == 2
    assert m.target_group("HealthyHostCount", "Average") == [2.0, 3.0]


def test_nodata_fault_publishes_nothing_until_cleared(seeded: EnvironmentConfig) -> None:
    set_fault("demo", "nodata")
    sim = _simulator(seeded, backfill_minutes=5)
    for i in range(3):
        assert sim.tick(T0 + timedelta(minutes=i)) == {"demo": 0}

    m = Metrics(seeded)
    assert m.alb("RequestCount", "Sum") == []
    assert m.target_group("HealthyHostCount", "Average") == []
    assert m.series("AWS/RDS", "CPUUtilization", "Average", DBInstanceIdentifier="demo-db") == []

    set_fault("demo", None)
    assert sim.tick(T0 + timedelta(minutes=3))["demo"] > 0
    assert len(m.alb("RequestCount", "Sum")) == 1  # the silent minutes stay silent


def test_5xx_fault_raises_the_5xx_count(seeded: EnvironmentConfig) -> None:
    sim = _simulator(seeded)
    _tick_minutes(sim, 1)
    set_fault("demo", "5xx")
    _tick_minutes(sim, 2, start=T0 + timedelta(minutes=1))

    m = Metrics(seeded)
    requests = m.alb("RequestCount", "Sum")
    errors = m.alb("HTTPCode_Target_5XX_Count", "Sum")
    assert errors[0] <= 2
    for total, failed in zip(requests[1:], errors[1:], strict=True):
        assert 0.17 <= failed / total <= 0.23
    assert m.target_group("HTTPCode_Target_5XX_Count", "Sum") == errors


def test_latency_and_unhealthy_faults(seeded: EnvironmentConfig) -> None:
    sim = _simulator(seeded)
    set_fault("demo", "latency")
    _tick_minutes(sim, 1)
    set_fault("demo", "unhealthy")
    _tick_minutes(sim, 1, start=T0 + timedelta(minutes=1))

    m = Metrics(seeded)
    latency = m.alb("TargetResponseTime", "Average")
    assert latency[0] == pytest.approx(2.5)
    assert latency[1] < 0.5
    assert m.target_group("HealthyHostCount", "Average") == [2.0, 0.0]
    assert m.target_group("UnHealthyHostCount", "Average") == [0.0, 2.0]


def test_faults_file_is_forgiving(tmp_path: Path) -> None:
    path = faults_path()
    path.write_text(json.dumps({"demo": "5xx", "other": "bogus"}))
    assert read_faults() == {"demo": "5xx"}
    path.write_text("{not json")
    assert read_faults() == {}
    set_fault("demo", "latency")
    assert json.loads(path.read_text()) == {"demo": "latency"}
