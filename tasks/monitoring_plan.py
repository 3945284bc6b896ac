"""What `monitoring.enable` wants to exist: alarms, dashboard, budget and log metric filter.

Pure functions of the environment's resources and the config, no AWS call, so the desired
state is the same on every run (what a re-run compares AWS with) and can be tested alone.
Names are deterministic (`ENV-...`), which is how a re-run finds what it made and how the
health gate recognises phase 2's alarms (they also carry the environment's discovery tags).
"""

import json
from typing import Any

from pydantic import BaseModel

from phasegate.config import EnvironmentConfig
from tasks.connection_limits import max_connections

ERROR_PATTERN = '?ERROR ?" 500 " ?" 502 " ?" 503 " ?" 504 "'
"""Log lines that count as errors: application ERROR lines and 5xx access-log entries."""

GIB = 1024**3


class Watched(BaseModel):
    """The environment's resources that monitoring watches, as discovery found them."""

    load_balancer: str  # app/NAME/ID, the ALB's CloudWatch dimension
    target_group: str  # targetgroup/NAME/ID
    compute: str  # "ecs" or "ec2"
    cluster: str = ""
    service: str = ""
    autoscaling_group: str = ""
    max_capacity: int
    databases: dict[str, str]  # identifier -> instance class
    cache_members: list[str]
    log_group: str | None


def names(env: str) -> dict[str, str]:
    return {
        "topic": f"{env}-alerts",
        "dashboard": f"{env}-overview",
        "budget": f"{env}-monthly",
        "metric_filter": f"{env}-errors",
        "metric_namespace": f"phasegate/{env}",
        "metric": "ErrorLines",
    }


def _alarm(
    namespace: str,
    metric: str,
    stat: str,
    dimensions: dict[str, str],
    threshold: float,
    comparison: str = "GreaterThanThreshold",
) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "metric": metric,
        "stat": stat,
        "dimensions": dict(sorted(dimensions.items())),
        "threshold": float(threshold),
        "comparison": comparison,
    }


def alarms(config: EnvironmentConfig, watched: Watched) -> dict[str, dict[str, Any]]:
    """Alarm name -> its definition: ALB, compute, RDS, Redis, scaling at max, log errors."""
    env, t = config.name, config.monitoring.thresholds
    alb = {"LoadBalancer": watched.load_balancer}
    elb = "AWS/ApplicationELB"
    found = {
        f"{env}-alb-target-5xx": _alarm(
            elb, "HTTPCode_Target_5XX_Count", "Sum", alb, t.target_5xx_per_minute
        ),
        f"{env}-alb-elb-5xx": _alarm(
            elb, "HTTPCode_ELB_5XX_Count", "Sum", alb, t.elb_5xx_per_minute
        ),
        f"{env}-alb-p99-latency": _alarm(
            elb, "TargetResponseTime", "p99", alb, t.p99_response_seconds
        ),
        f"{env}-alb-unhealthy-hosts": _alarm(
            elb,
            "UnHealthyHostCount",
            "Maximum",
            {**alb, "TargetGroup": watched.target_group},
            t.unhealthy_hosts,
        ),
    }
    if watched.compute == "ecs":
        service = {"ClusterName": watched.cluster, "ServiceName": watched.service}
        found[f"{env}-compute-cpu"] = _alarm(
            "AWS/ECS", "CPUUtilization", "Average", service, t.compute_cpu_percent
        )
        found[f"{env}-scaling-at-max"] = _alarm(
            "ECS/ContainerInsights",
            "RunningTaskCount",
            "Maximum",
            service,
            watched.max_capacity,
            "GreaterThanOrEqualToThreshold",
        )
    else:
        group = {"AutoScalingGroupName": watched.autoscaling_group}
        found[f"{env}-compute-cpu"] = _alarm(
            "AWS/EC2", "CPUUtilization", "Average", group, t.compute_cpu_percent
        )
        found[f"{env}-scaling-at-max"] = _alarm(
            "AWS/AutoScaling",
            "GroupInServiceInstances",
            "Maximum",
            group,
            watched.max_capacity,
            "GreaterThanOrEqualToThreshold",
        )
    for db, instance_class in watched.databases.items():
        dims = {"DBInstanceIdentifier": db}
        limit = max_connections(instance_class, config.database.memory_per_connection_mib)
        found[f"{env}-rds-{db}-cpu"] = _alarm(
            "AWS/RDS", "CPUUtilization", "Average", dims, t.rds_cpu_percent
        )
        found[f"{env}-rds-{db}-free-storage"] = _alarm(
            "AWS/RDS",
            "FreeStorageSpace",
            "Minimum",
            dims,
            t.rds_free_storage_gb * GIB,
            "LessThanThreshold",
        )
        found[f"{env}-rds-{db}-connections"] = _alarm(
            "AWS/RDS",
            "DatabaseConnections",
            "Maximum",
            dims,
            round(limit * t.rds_connections_percent / 100),
        )
    for member in watched.cache_members:
        dims = {"CacheClusterId": member}
        found[f"{env}-redis-{member}-memory"] = _alarm(
            "AWS/ElastiCache",
            "DatabaseMemoryUsagePercentage",
            "Maximum",
            dims,
            t.redis_memory_percent,
        )
        found[f"{env}-redis-{member}-evictions"] = _alarm(
            "AWS/ElastiCache", "Evictions", "Sum", dims, t.redis_evictions_per_minute
        )
    if watched.log_group:
        n = names(env)
        found[f"{env}-log-errors"] = _alarm(
            n["metric_namespace"], n["metric"], "Sum", {}, t.log_errors_per_minute
        )
    return found


def _widget(title: str, metrics: list[list[Any]], region: str, stat: str) -> dict[str, Any]:
    return {
        "type": "metric",
        "width": 12,
        "height": 6,
        "properties": {
            "title": title,
            "region": region,
            "stat": stat,
            "period": 60,
            "view": "timeSeries",
            "metrics": metrics,
        },
    }


def dashboard(config: EnvironmentConfig, watched: Watched) -> dict[str, Any]:
    """One widget per component: ALB traffic, errors and latency; compute; RDS; Redis."""
    region, elb = config.aws.region, "AWS/ApplicationELB"
    lb = ["LoadBalancer", watched.load_balancer]
    widgets = [
        _widget("ALB requests", [[elb, "RequestCount", *lb]], region, "Sum"),
        _widget(
            "ALB 4xx / 5xx",
            [
                [elb, m, *lb]
                for m in (
                    "HTTPCode_Target_4XX_Count",
                    "HTTPCode_Target_5XX_Count",
                    "HTTPCode_ELB_5XX_Count",
                )
            ],
            region,
            "Sum",
        ),
        _widget(
            "ALB latency p50 / p99",
            [[elb, "TargetResponseTime", *lb, {"stat": s}] for s in ("p50", "p99")],
            region,
            "p50",
        ),
    ]
    if watched.compute == "ecs":
        svc = ["ClusterName", watched.cluster, "ServiceName", watched.service]
        widgets.append(
            _widget(
                "Compute CPU / memory / running tasks",
                [
                    ["AWS/ECS", "CPUUtilization", *svc],
                    ["AWS/ECS", "MemoryUtilization", *svc],
                    ["ECS/ContainerInsights", "RunningTaskCount", *svc],
                ],
                region,
                "Average",
            )
        )
    else:
        asg = ["AutoScalingGroupName", watched.autoscaling_group]
        widgets.append(
            _widget(
                "Compute CPU / memory / InService instances",
                [
                    ["AWS/EC2", "CPUUtilization", *asg],
                    ["CWAgent", "mem_used_percent", *asg],
                    ["AWS/AutoScaling", "GroupInServiceInstances", *asg],
                ],
                region,
                "Average",
            )
        )
    widgets.append(
        _widget(
            "RDS CPU / connections / free storage",
            [
                ["AWS/RDS", m, "DBInstanceIdentifier", db]
                for db in watched.databases
                for m in ("CPUUtilization", "DatabaseConnections", "FreeStorageSpace")
            ],
            region,
            "Average",
        )
    )
    widgets.append(
        _widget(
            "Redis CPU / memory / evictions",
            [
                ["AWS/ElastiCache", m, "CacheClusterId", c]
                for c in watched.cache_members
                for m in ("CPUUtilization", "DatabaseMemoryUsagePercentage", "Evictions")
            ],
            region,
            "Average",
        )
    )
    return {"widgets": widgets}


def dashboard_body(config: EnvironmentConfig, watched: Watched) -> str:
    return json.dumps(dashboard(config, watched), sort_keys=True)


def budget_filter(config: EnvironmentConfig) -> str:
    """The budget's cost filter: the cost-allocation tag `user:KEY$VALUE`."""
    tags = config.discovery.tags
    key = config.monitoring.budget_tag or next(iter(tags))  # config checks it is one of them
    return f"user:{key}${tags[key]}"


BUDGET_NOTIFICATIONS = [("FORECASTED", 80.0), ("ACTUAL", 100.0)]
"""(type, percent of the budget): warn on the forecast at 80%, alert on the actual at 100%."""
