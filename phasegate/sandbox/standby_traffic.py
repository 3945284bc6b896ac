"""What a standby in the second region receives while the primary is healthy, for the simulator.

On AWS the standby's ALB sits behind Route 53's SECONDARY failover record, so no user reaches
it while the PRIMARY record's health check passes; its only requests are Route 53's health
checks. Each health check whose FullyQualifiedDomainName is the ALB's DNS name sends one
request every RequestInterval seconds (30, or 10 for a fast check) from each of its checker
regions: the check's `Regions`, or AWS's default 8 when it names none. That is the assumption
here: one checker per checker region, so a 30 s check makes 16 requests a minute. (AWS says
that with several checkers per region an endpoint sees one about every 2-3 s; the gate's
reading of a standby does not depend on the exact figure.) Before regions.expand.dns has made
a check there is no request at all, and so no request metric.

moto never evaluates health checks, so the sandbox's primary is always the healthy one and the
standby never takes over: its traffic is the checks' and nothing more.
"""

from collections.abc import Iterable
from typing import Any

from phasegate.aws import AwsClients
from phasegate.config import EnvironmentConfig
from phasegate.inventory import Inventory
from phasegate.secondary_region import ROLE_TAG, SECONDARY_ROLE

DEFAULT_CHECKER_REGIONS = (
    "us-east-1", "us-west-1", "us-west-2", "eu-west-1",
    "ap-southeast-1", "ap-southeast-2", "ap-northeast-1", "sa-east-1",
)  # fmt: skip
DEFAULT_REQUEST_INTERVAL = 30

SeriesKey = tuple[str, str, tuple[tuple[str, str], ...]]


def is_standby(config: EnvironmentConfig) -> bool:
    """Whether `config` is a second region's view (phasegate.secondary_region's tags)."""
    return config.discovery.tags.get(ROLE_TAG) == SECONDARY_ROLE


def health_check_requests(clients: AwsClients, inventory: Inventory) -> dict[str, int]:
    """Per load balancer ARN of `inventory`: the requests a minute Route 53's health checks
    send it (0 for one no check points at)."""
    by_name = {lb.dns_name.rstrip(".").lower(): lb.arn for lb in inventory.load_balancers}
    requests = dict.fromkeys(by_name.values(), 0)
    if not by_name:
        return requests
    pages = clients.route53.get_paginator("list_health_checks").paginate()
    for check in (c for page in pages for c in page["HealthChecks"]):
        config = check.get("HealthCheckConfig", {})
        arn = by_name.get(str(config.get("FullyQualifiedDomainName", "")).rstrip(".").lower())
        if arn is not None:
            requests[arn] += _per_minute(config)
    return requests


def _per_minute(config: dict[str, Any]) -> int:
    regions = config.get("Regions") or DEFAULT_CHECKER_REGIONS
    interval = int(config.get("RequestInterval") or DEFAULT_REQUEST_INTERVAL)
    return len(regions) * 60 // interval


def series_key(namespace: str, datum: dict[str, Any]) -> SeriesKey:
    """One metric series: its namespace, name and dimensions."""
    dims = tuple((d["Name"], d["Value"]) for d in datum["Dimensions"])
    return namespace, datum["MetricName"], dims


def new_series(
    data: dict[str, list[dict[str, Any]]], published: Iterable[SeriesKey]
) -> dict[str, list[dict[str, Any]]]:
    """The datums of `data` whose series is not among `published`, by namespace."""
    seen = set(published)
    fresh = {ns: [d for d in ds if series_key(ns, d) not in seen] for ns, ds in data.items()}
    return {ns: datums for ns, datums in fresh.items() if datums}
