"""cdn.enable end to end against the sandbox over HTTP: a Deployed distribution whose origin is
the ALB, static paths cached and the default behaviour caching nothing, a re-run making no
mutating call, a rollback that disables before it deletes (the sandbox refuses deleting an
enabled distribution, as AWS does), and a plan priced at the configured request rate."""

from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import write_environment

from phasegate.config import EnvironmentConfig, parse_environment
from phasegate.errors import AwsCallError
from phasegate.lifecycle import execute
from phasegate.sandbox.app import is_mutating
from phasegate.steps import StepContext
from tasks.cdn import CdnEnable
from tasks.cdn_distribution import ALL_VIEWER, CACHING_DISABLED, CACHING_OPTIMIZED

pytestmark = pytest.mark.timeout(600)


def mutating_calls(sandbox: str) -> list[str]:
    calls = requests.get(f"{sandbox}/_phasegate/calls", timeout=10).json()
    return [f"{c['service']}:{c['action']}" for c in calls if is_mutating(c["action"])]


def distributions(config: EnvironmentConfig) -> list[dict[str, Any]]:
    cloudfront = StepContext.for_environment(config).clients.client("cloudfront")
    return cloudfront.list_distributions()["DistributionList"].get("Items") or []


@pytest.fixture
def cdn_config(seeded: EnvironmentConfig, sandbox: str, tmp_path: Path) -> EnvironmentConfig:
    return parse_environment(
        write_environment(
            tmp_path,
            "demo",
            sandbox,
            cdn={"enabled": True},
            usage={"requests_per_month": 30_000_000},
        )
    )


def test_cdn_fronts_the_alb_caches_static_paths_only_and_rolls_back(
    cdn_config: EnvironmentConfig, sandbox: str
) -> None:
    ctx = StepContext.for_environment(cdn_config)
    alb = ctx.clients.elbv2.describe_load_balancers()["LoadBalancers"][0]["DNSName"]
    step = CdnEnable(ctx)
    change = step.plan(step.observe())
    assert change is not None
    assert change.monthly_cost_delta == 30.0  # 3,000 x 10,000 HTTPS requests at $0.01
    assert "prices as of 2026-11-01" in change.summary

    record = execute(step, key="phase 3")

    assert set(record.api_actions) <= set(step.iam_actions)
    [listed] = distributions(cdn_config)
    cloudfront = ctx.clients.client("cloudfront")
    found = cloudfront.get_distribution(Id=listed["Id"])["Distribution"]
    config = found["DistributionConfig"]
    assert found["Status"] == "Deployed"
    assert [o["DomainName"] for o in config["Origins"]["Items"]] == [alb]
    default = config["DefaultCacheBehavior"]
    assert (default["CachePolicyId"], default["OriginRequestPolicyId"]) == (
        CACHING_DISABLED,
        ALL_VIEWER,
    )
    assert default["ViewerProtocolPolicy"] == "redirect-to-https"
    assert {b["PathPattern"]: b["CachePolicyId"] for b in config["CacheBehaviors"]["Items"]} == {
        "/static/*": CACHING_OPTIMIZED,
        "/assets/*": CACHING_OPTIMIZED,
    }

    requests.delete(f"{sandbox}/_phasegate/calls", timeout=10).raise_for_status()
    assert step.plan(step.observe()) is None
    assert mutating_calls(sandbox) == []

    with pytest.raises(AwsCallError) as refused:  # AWS's rule, which rollback must follow
        etag = cloudfront.get_distribution(Id=listed["Id"])["ETag"]
        cloudfront.delete_distribution(Id=listed["Id"], IfMatch=etag)
    assert refused.value.code == "DistributionNotDisabled"

    step.rollback(record)
    step.verify_rollback(record)
    assert distributions(cdn_config) == []


def test_cdn_is_opt_in(seeded: EnvironmentConfig, sandbox: str) -> None:
    step = CdnEnable(StepContext.for_environment(seeded))
    assert step.plan(step.observe()) is None
    assert distributions(seeded) == []
