"""The health gate's checks: what one round measures, each check one question about one
resource (the 5xx ratio of one ALB, the CPU of one database).

Metrics come from CloudWatch on AWS's own namespaces, metric names and dimensions, read with
ONE GetMetricData call per round (period 60 s, window = the last `lookback_minutes`); status
comes from the services' describe calls; alarms from DescribeAlarms. No data is
inconclusive, never a pass. How rounds add up to a verdict is phasegate.gates' job.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from phasegate.aws import AwsClients
from phasegate.config import EnvironmentConfig
from phasegate.errors import PhasegateError
from phasegate.gate_results import CheckResult
from phasegate.inventory import Database, Inventory, LoadBalancer, TargetGroup

PERIOD_SECONDS = 60
# AWS accepts at most 500 queries in one GetMetricData call; an environment needs about ten.
MAX_QUERIES_PER_CALL = 500

_AWS_ERRORS = (PhasegateError, ClientError, BotoCoreError)


@dataclass(frozen=True)
class Metric:
    """One CloudWatch metric and statistic, as GetMetricData names it."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    stat: str

    def query(self, query_id: str) -> dict[str, Any]:
        return {
            "Id": query_id,
            "MetricStat": {
                "Metric": {
                    "Namespace": self.namespace,
                    "MetricName": self.name,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in self.dimensions],
                },
                "Period": PERIOD_SECONDS,
                "Stat": self.stat,
            },
            "ReturnData": True,
        }


Series = list[tuple[datetime, float]]


@dataclass
class MetricData:
    """What one round's GetMetricData returned: datapoints per metric, or why there are none."""

    series: dict[Metric, Series]
    errors: dict[Metric, str]

    def get(self, metric: Metric) -> Series:
        return self.series.get(metric, [])

    def why_empty(self, metric: Metric, lookback_minutes: int) -> str:
        if metric in self.errors:
            return self.errors[metric]
        return f"no {metric.namespace} {metric.name} datapoints in the last {lookback_minutes} min"


def load_balancer_dimension(arn: str) -> str:
    """'app/NAME/ID', the LoadBalancer dimension, from '...:loadbalancer/app/NAME/ID'."""
    return arn.split(":loadbalancer/", 1)[1]


def target_group_dimension(arn: str) -> str:
    """'targetgroup/NAME/ID', the TargetGroup dimension, from '...:targetgroup/NAME/ID'."""
    return "targetgroup/" + arn.split(":targetgroup/", 1)[1]


def _alb(name: str, lb_dim: str, stat: str, **extra: str) -> Metric:
    return Metric("AWS/ApplicationELB", name, (*extra.items(), ("LoadBalancer", lb_dim)), stat)


def _weighted_mean(values: Series, weights: Series) -> float:
    """Mean of per-minute averages, weighted by that minute's request count where known."""
    by_time = dict(weights)
    pairs = [(v, by_time.get(t)) for t, v in values]
    if all(w is not None and w > 0 for _, w in pairs):
        total = sum(w for _, w in pairs if w is not None)
        return sum(v * w for v, w in pairs if w is not None) / total
    return sum(v for v, _ in pairs) / len(pairs)


def _is_not_found(exc: BaseException) -> bool:
    code = getattr(exc, "code", None) or getattr(exc, "response", {}).get("Error", {}).get(
        "Code", ""
    )
    return "NotFound" in str(code)


def _tags(items: Iterable[dict[str, str]] | None) -> dict[str, str]:
    return {t.get("Key", ""): t.get("Value", "") for t in items or []}


class GateChecks:
    """Every check of one environment's gate; alarm tags are read once per instance (gate)."""

    def __init__(self, config: EnvironmentConfig, clients: AwsClients) -> None:
        self.config = config
        self.gates = config.gates
        self.clients = clients
        self._alarm_tag_cache: dict[str, dict[str, str]] = {}

    # -- what a number means here (phasegate.gate_regions judges a standby otherwise) -------

    no_requests = "no requests in the window, so there is no 5xx ratio to judge"

    def ratio_threshold(self) -> str:
        return f"<= {self.gates.max_5xx_ratio:g}"

    def errors_allowed(self, requests: float) -> float:
        """How many of `requests` may answer 5xx: `max_5xx_ratio` of them."""
        return self.gates.max_5xx_ratio * requests

    def hosts_judged(self, hosts: Series) -> tuple[float, str]:
        """The HealthyHostCount judged, and which one: the window's lowest, since a dip in
        healthy hosts is an outage for the requests it served."""
        return min(v for _, v in hosts), "lowest"

    def measure(
        self, inventory: Inventory, serving: dict[str, list[TargetGroup]], at: datetime
    ) -> list[CheckResult]:
        """Every check once, with the window ending at `at`."""
        metrics = self._metrics(inventory, serving)
        data = self.fetch(metrics, at)
        checks: list[CheckResult] = []
        for lb in inventory.load_balancers:
            checks += self._load_balancer_checks(lb, serving[lb.arn], data)
        checks += self._compute_checks(inventory)
        for db in inventory.databases:
            checks += self._database_checks(db.identifier, data, self.judges_connections(db))
            if db.replica_source:
                checks.append(self._replica_lag_check(db.identifier, data))
        for cache in inventory.caches:
            checks += self._cache_checks(cache.id, cache.member_clusters, data)
        if not checks:
            checks.append(
                CheckResult(
                    name="discovery",
                    resource=self.config.name,
                    status="inconclusive",
                    threshold="resources found",
                    detail=f"nothing carries the discovery tags {self.config.discovery.tags}",
                )
            )
        checks.append(self._alarm_check())
        return checks

    def _metrics(self, inventory: Inventory, serving: dict[str, list[TargetGroup]]) -> list[Metric]:
        """Every metric this round reads, each once."""
        metrics: list[Metric] = []
        for lb in inventory.load_balancers:
            dim = load_balancer_dimension(lb.arn)
            metrics += [
                _alb("RequestCount", dim, "Sum"),
                _alb("HTTPCode_Target_5XX_Count", dim, "Sum"),
                _alb("HTTPCode_ELB_5XX_Count", dim, "Sum"),
                _alb("TargetResponseTime", dim, "Average"),
            ]
            for tg in serving[lb.arn]:
                metrics.append(
                    _alb(
                        "HealthyHostCount",
                        dim,
                        "Minimum",
                        TargetGroup=target_group_dimension(tg.arn),
                    )
                )
        for db in inventory.databases:
            cpu, connections = _database_metrics(db.identifier)
            metrics += [cpu, connections] if self.judges_connections(db) else [cpu]
            if db.replica_source:
                metrics.append(_replica_lag_metric(db.identifier))
        for cache in inventory.caches:
            for member in cache.member_clusters:
                metrics += _cache_metrics(member)
        return list(dict.fromkeys(metrics))

    def fetch(self, metrics: list[Metric], at: datetime) -> MetricData:
        """Datapoints of `metrics` in the lookback window ending at `at`: one GetMetricData call
        (more only past 500 queries or when CloudWatch pages its answer)."""
        data = MetricData(series={m: [] for m in metrics}, errors={})
        start = at - timedelta(minutes=self.gates.lookback_minutes)
        cloudwatch = self.clients.cloudwatch
        for offset in range(0, len(metrics), MAX_QUERIES_PER_CALL):
            chunk = metrics[offset : offset + MAX_QUERIES_PER_CALL]
            queries = [m.query(f"m{offset + i}") for i, m in enumerate(chunk)]
            token: str | None = None
            try:
                while True:
                    params: dict[str, Any] = {
                        "MetricDataQueries": queries,
                        "StartTime": start,
                        "EndTime": at,
                        "ScanBy": "TimestampAscending",
                    }
                    if token:
                        params["NextToken"] = token
                    response = cloudwatch.get_metric_data(**params)
                    for result in response["MetricDataResults"]:
                        metric = metrics[int(result["Id"][1:])]
                        status = result.get("StatusCode", "Complete")
                        if status not in ("Complete", "PartialData"):
                            messages = "; ".join(
                                m.get("Value", "") for m in result.get("Messages", [])
                            )
                            data.errors[metric] = f"CloudWatch answered {status} {messages}".strip()
                            continue
                        data.series[metric] += zip(
                            result.get("Timestamps", []), result.get("Values", []), strict=False
                        )
                    token = response.get("NextToken")
                    if not token:
                        break
            except _AWS_ERRORS as exc:
                for metric in chunk:
                    data.errors[metric] = f"GetMetricData failed: {exc}"
        return data

    # -- the checks -------------------------------------------------------------------------

    def serving_target_groups(self, inventory: Inventory) -> dict[str, list[TargetGroup]]:
        """Per ALB, the target groups whose healthy hosts are checked.

        A target group counts when compute is meant to sit in it (an ECS service or an Auto
        Scaling group with desired > 0) or it has registered targets. An ALB with no such
        group has nothing behind it: all its groups are checked, so the gate sees it.
        """
        compute = [*inventory.services, *inventory.autoscaling_groups]
        wanted = {arn for c in compute if c.desired > 0 for arn in c.target_groups}
        serving: dict[str, list[TargetGroup]] = {}
        for lb in inventory.load_balancers:
            groups = [tg for tg in lb.target_groups if tg.arn in wanted or self._has_targets(tg)]
            serving[lb.arn] = groups or list(lb.target_groups)
        return serving

    def _has_targets(self, tg: TargetGroup) -> bool:
        try:
            health = self.clients.elbv2.describe_target_health(TargetGroupArn=tg.arn)
        except _AWS_ERRORS:
            return False
        return bool(health.get("TargetHealthDescriptions"))

    def _load_balancer_checks(
        self, lb: LoadBalancer, serving: list[TargetGroup], data: MetricData
    ) -> list[CheckResult]:
        g = self.gates
        dim = load_balancer_dimension(lb.arn)
        requests_metric = _alb("RequestCount", dim, "Sum")
        errors_metric = _alb("HTTPCode_Target_5XX_Count", dim, "Sum")
        latency_metric = _alb("TargetResponseTime", dim, "Average")
        requests = data.get(requests_metric)
        checks = []

        ratio_threshold = self.ratio_threshold()
        total = sum(v for _, v in requests)
        if not requests:
            checks.append(
                _inconclusive(
                    "alb-5xx-ratio",
                    lb.name,
                    ratio_threshold,
                    data.why_empty(requests_metric, g.lookback_minutes),
                )
            )
        elif total <= 0:
            checks.append(
                _inconclusive(
                    "alb-5xx-ratio",
                    lb.name,
                    ratio_threshold,
                    self.no_requests,
                )
            )
        elif errors_metric in data.errors:
            checks.append(
                _inconclusive("alb-5xx-ratio", lb.name, ratio_threshold, data.errors[errors_metric])
            )
        else:
            # AWS publishes HTTPCode_Target_5XX_Count only for periods that had a 5xx: a
            # healthy ALB has RequestCount datapoints and no 5xx ones. So with requests
            # present, a missing 5xx series means zero errors, not missing data; missing
            # RequestCount, by contrast, means we know nothing and stays inconclusive above.
            errors = sum(v for _, v in data.get(errors_metric))
            ratio = errors / total
            checks.append(
                CheckResult(
                    name="alb-5xx-ratio",
                    resource=lb.name,
                    status="pass" if errors <= self.errors_allowed(total) else "fail",
                    value=round(ratio, 6),
                    threshold=ratio_threshold,
                    detail=f"{errors:.0f} of {total:.0f} requests answered 5xx by the targets",
                )
            )

        checks.append(self._elb_5xx_check(lb, requests, data))

        latency_threshold = f"<= {g.max_response_time_seconds:g} s"
        latencies = data.get(latency_metric)
        if not latencies:
            checks.append(
                _inconclusive(
                    "alb-response-time",
                    lb.name,
                    latency_threshold,
                    data.why_empty(latency_metric, g.lookback_minutes),
                )
            )
        else:
            average = _weighted_mean(latencies, requests)
            checks.append(
                CheckResult(
                    name="alb-response-time",
                    resource=lb.name,
                    status="pass" if average <= g.max_response_time_seconds else "fail",
                    value=round(average, 4),
                    threshold=latency_threshold,
                    detail=f"TargetResponseTime Average over {len(latencies)} min",
                )
            )

        for tg in serving:
            metric = _alb(
                "HealthyHostCount", dim, "Minimum", TargetGroup=target_group_dimension(tg.arn)
            )
            hosts = data.get(metric)
            threshold = f">= {g.min_healthy_hosts}"
            if not hosts:
                checks.append(
                    _inconclusive(
                        "healthy-hosts",
                        tg.name,
                        threshold,
                        data.why_empty(metric, g.lookback_minutes),
                    )
                )
                continue
            lowest, which = self.hosts_judged(hosts)
            checks.append(
                CheckResult(
                    name="healthy-hosts",
                    resource=tg.name,
                    status="pass" if lowest >= g.min_healthy_hosts else "fail",
                    value=lowest,
                    threshold=threshold,
                    detail=f"{which} HealthyHostCount behind {lb.name} in {len(hosts)} min",
                )
            )
        return checks

    def _elb_5xx_check(self, lb: LoadBalancer, requests: Series, data: MetricData) -> CheckResult:
        """The ALB's own 5xx (HTTPCode_ELB_5XX_Count): 503 when no target is healthy, 502
        when targets refuse connections. Target metrics never see these requests."""
        threshold = self.ratio_threshold()
        metric = _alb("HTTPCode_ELB_5XX_Count", load_balancer_dimension(lb.arn), "Sum")
        total = sum(v for _, v in requests)
        if not requests or total <= 0:
            return _inconclusive("alb-elb-5xx-ratio", lb.name, threshold, self.no_requests)
        if metric in data.errors:
            return _inconclusive("alb-elb-5xx-ratio", lb.name, threshold, data.errors[metric])
        errors = sum(v for _, v in data.get(metric))  # published only for minutes with a 5xx
        ratio = errors / total
        return CheckResult(
            name="alb-elb-5xx-ratio",
            resource=lb.name,
            status="pass" if errors <= self.errors_allowed(total) else "fail",
            value=round(ratio, 6),
            threshold=threshold,
            detail=f"{errors:.0f} of {total:.0f} requests answered 5xx by the load balancer",
        )

    def _compute_checks(self, inventory: Inventory) -> list[CheckResult]:
        """ECS running == desired per service, InService == desired per Auto Scaling group."""
        checks = []
        by_cluster: dict[str, list[str]] = {}
        for svc in inventory.services:
            by_cluster.setdefault(svc.cluster, []).append(svc.name)
        for cluster, names in by_cluster.items():
            for i in range(0, len(names), 10):
                batch = names[i : i + 10]
                try:
                    response = self.clients.ecs.describe_services(cluster=cluster, services=batch)
                except _AWS_ERRORS as exc:
                    checks += [
                        _inconclusive(
                            "ecs-running", f"{cluster}/{n}", "== desired", f"describe failed: {exc}"
                        )
                        for n in batch
                    ]
                    continue
                found = {s["serviceName"]: s for s in response.get("services", [])}
                for name in batch:
                    resource = f"{cluster}/{name}"
                    svc = found.get(name)
                    if svc is None or svc.get("status") != "ACTIVE":
                        checks.append(
                            CheckResult(
                                name="ecs-running",
                                resource=resource,
                                status="fail",
                                value=(svc or {}).get("status", "missing"),
                                threshold="== desired",
                                detail="the service is gone or no longer ACTIVE",
                            )
                        )
                        continue
                    desired, running = svc["desiredCount"], svc["runningCount"]
                    if desired == 0:
                        continue  # scaled to zero on purpose (e.g. replaced by an ASG)
                    checks.append(
                        CheckResult(
                            name="ecs-running",
                            resource=resource,
                            status="pass" if running == desired else "fail",
                            value=running,
                            threshold=f"== desired ({desired})",
                            detail=f"{running} of {desired} tasks running",
                        )
                    )
        names = [a.name for a in inventory.autoscaling_groups]
        for i in range(0, len(names), 50):
            batch = names[i : i + 50]
            try:
                groups = self.clients.autoscaling.describe_auto_scaling_groups(
                    AutoScalingGroupNames=batch
                )["AutoScalingGroups"]
            except _AWS_ERRORS as exc:
                checks += [
                    _inconclusive("asg-in-service", n, "== desired", f"describe failed: {exc}")
                    for n in batch
                ]
                continue
            found = {g["AutoScalingGroupName"]: g for g in groups}
            for name in batch:
                group = found.get(name)
                if group is None:
                    checks.append(
                        CheckResult(
                            name="asg-in-service",
                            resource=name,
                            status="fail",
                            value="missing",
                            threshold="== desired",
                            detail="the Auto Scaling group is gone",
                        )
                    )
                    continue
                desired = group["DesiredCapacity"]
                if desired == 0:
                    continue
                in_service = sum(
                    1 for i in group.get("Instances", []) if i["LifecycleState"] == "InService"
                )
                checks.append(
                    CheckResult(
                        name="asg-in-service",
                        resource=name,
                        status="pass" if in_service == desired else "fail",
                        value=in_service,
                        threshold=f"== desired ({desired})",
                        detail=f"{in_service} of {desired} instances InService",
                    )
                )
        return checks

    @staticmethod
    def _available_check(name: str, resource: str, read_status: Callable[[], str]) -> CheckResult:
        """Pass when AWS says `available`; a failed describe says why, as a fail."""
        try:
            status = read_status()
        except _AWS_ERRORS as exc:
            return _describe_failed(name, resource, exc)
        return CheckResult(
            name=name,
            resource=resource,
            status="pass" if status == "available" else "fail",
            value=status,
            threshold="== available",
        )

    def judges_connections(self, db: Database) -> bool:
        """Whether `db`'s DatabaseConnections is judged: 0 while the app runs means it lost
        the database. A second region's gate says otherwise for its idle replica."""
        return True

    def _database_checks(
        self, identifier: str, data: MetricData, connections_judged: bool
    ) -> list[CheckResult]:
        checks = [
            self._available_check(
                "rds-status",
                identifier,
                lambda: self.clients.rds.describe_db_instances(DBInstanceIdentifier=identifier)[
                    "DBInstances"
                ][0]["DBInstanceStatus"],
            )
        ]
        cpu, connections = _database_metrics(identifier)
        checks.append(self._cpu_check("rds-cpu", identifier, cpu, data))
        if not connections_judged:
            return checks
        checks.append(
            self._bound_check(
                "rds-connections", identifier, connections, data, ">=",
                self.gates.min_db_connections, lambda points: min(v for _, v in points),
                "lowest DatabaseConnections",
            )
        )  # fmt: skip
        return checks

    def _replica_lag_check(self, identifier: str, data: MetricData) -> CheckResult:
        """A read replica's lag behind its source: a standby far behind fails over with
        writes missing, so it is found here rather than on failover."""
        return self._bound_check(
            "rds-replica-lag", identifier, _replica_lag_metric(identifier), data, "<=",
            self.gates.max_replica_lag_seconds, lambda points: max(v for _, v in points),
            "highest ReplicaLag (s)",
        )  # fmt: skip

    def _cache_checks(
        self, group_id: str, members: list[str], data: MetricData
    ) -> list[CheckResult]:
        checks = [
            self._available_check(
                "redis-status",
                group_id,
                lambda: self.clients.elasticache.describe_replication_groups(
                    ReplicationGroupId=group_id
                )["ReplicationGroups"][0]["Status"],
            )
        ]
        g = self.gates
        for member in members:
            cpu, evictions, memory = _cache_metrics(member)
            checks.append(self._cpu_check("redis-cpu", member, cpu, data))
            checks.append(
                self._bound_check(
                    "redis-evictions", member, evictions, data, "<=", g.max_cache_evictions,
                    lambda points: sum(v for _, v in points), "Evictions summed",
                )
            )  # fmt: skip
            checks.append(
                self._bound_check(
                    "redis-memory", member, memory, data, "<=", g.max_cache_memory_percent,
                    lambda points: max(v for _, v in points),
                    "highest DatabaseMemoryUsagePercentage",
                )
            )  # fmt: skip
        return checks

    def _bound_check(
        self,
        name: str,
        resource: str,
        metric: Metric,
        data: MetricData,
        op: Literal["<=", ">="],
        limit: float,
        reduce: Callable[[Series], float],
        what: str,
    ) -> CheckResult:
        """`reduce` of the window's datapoints against `limit`; no data is inconclusive."""
        threshold = f"{op} {limit:g}"
        points = data.get(metric)
        if not points:
            return _inconclusive(
                name, resource, threshold, data.why_empty(metric, self.gates.lookback_minutes)
            )
        value = reduce(points)
        ok = value <= limit if op == "<=" else value >= limit
        return CheckResult(
            name=name,
            resource=resource,
            status="pass" if ok else "fail",
            value=round(value, 2),
            threshold=threshold,
            detail=f"{what} over {len(points)} min",
        )

    def _cpu_check(self, name: str, resource: str, metric: Metric, data: MetricData) -> CheckResult:
        limit = self.gates.max_cpu_percent
        threshold = f"<= {limit:g} %"
        points = data.get(metric)
        if not points:
            return _inconclusive(
                name, resource, threshold, data.why_empty(metric, self.gates.lookback_minutes)
            )
        average = sum(v for _, v in points) / len(points)
        return CheckResult(
            name=name,
            resource=resource,
            status="pass" if average <= limit else "fail",
            value=round(average, 2),
            threshold=threshold,
            detail=f"CPUUtilization Average over {len(points)} min",
        )

    def _alarm_tags(self, arn: str) -> dict[str, str]:
        """An alarm's tags, read once per gate: a gate of N rounds asks for each alarm once."""
        if arn not in self._alarm_tag_cache:
            found = self.clients.cloudwatch.list_tags_for_resource(ResourceARN=arn)
            self._alarm_tag_cache[arn] = _tags(found.get("Tags"))
        return self._alarm_tag_cache[arn]

    def _alarm_check(self) -> CheckResult:
        """No alarm of the environment in ALARM. An alarm belongs to the environment by its
        tags, never by its name: environment `acme` must not claim `acme-prod-*` alarms."""
        env = self.config.name
        threshold = "none in ALARM"
        cloudwatch = self.clients.cloudwatch
        try:
            alarms: list[dict[str, Any]] = []
            for page in cloudwatch.get_paginator("describe_alarms").paginate(
                StateValue="ALARM", AlarmTypes=["MetricAlarm", "CompositeAlarm"]
            ):
                alarms += page.get("MetricAlarms", []) + page.get("CompositeAlarms", [])
            ours = []
            for alarm in alarms:
                tags = self._alarm_tags(alarm["AlarmArn"])
                if all(tags.get(k) == v for k, v in self.config.discovery.tags.items()):
                    ours.append(alarm["AlarmName"])
        except _AWS_ERRORS as exc:
            return _inconclusive("alarms", env, threshold, f"DescribeAlarms failed: {exc}")
        return CheckResult(
            name="alarms",
            resource=env,
            status="fail" if ours else "pass",
            value=len(ours),
            threshold=threshold,
            detail=f"in ALARM: {', '.join(sorted(ours))}" if ours else "",
        )


def _database_metrics(identifier: str) -> list[Metric]:
    """CPU, and connections: 0 connections while the app runs means it lost the database."""
    dims = (("DBInstanceIdentifier", identifier),)
    return [
        Metric("AWS/RDS", "CPUUtilization", dims, "Average"),
        Metric("AWS/RDS", "DatabaseConnections", dims, "Minimum"),
    ]


def _replica_lag_metric(identifier: str) -> Metric:
    return Metric("AWS/RDS", "ReplicaLag", (("DBInstanceIdentifier", identifier),), "Maximum")


def _cache_metrics(member: str) -> list[Metric]:
    dims = (("CacheClusterId", member),)
    return [
        Metric("AWS/ElastiCache", "CPUUtilization", dims, "Average"),
        Metric("AWS/ElastiCache", "Evictions", dims, "Sum"),
        Metric("AWS/ElastiCache", "DatabaseMemoryUsagePercentage", dims, "Maximum"),
    ]


def _inconclusive(name: str, resource: str, threshold: str, detail: str) -> CheckResult:
    return CheckResult(
        name=name, resource=resource, status="inconclusive", threshold=threshold, detail=detail
    )


def _describe_failed(name: str, resource: str, exc: BaseException) -> CheckResult:
    """A resource that discovery found and is now gone fails; any other error is unknown."""
    if _is_not_found(exc):
        return CheckResult(
            name=name,
            resource=resource,
            status="fail",
            value="missing",
            threshold="== available",
            detail=str(exc),
        )
    return _inconclusive(name, resource, "== available", f"describe failed: {exc}")
