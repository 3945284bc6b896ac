"""cache.resize against the sandbox, and both phase-1 resizes running at once on one context."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from phasegate.aws import recording_calls
from phasegate.config import EnvironmentConfig, Targets
from phasegate.errors import AwsCallError
from phasegate.inventory import CacheGroup
from phasegate.lifecycle import StepFailed, execute, plan, undo
from phasegate.sandbox.app import is_mutating
from phasegate.steps import StepContext, StepRefused
from tasks.cache import SUPERSEDED_TAG, CacheResize
from tasks.database import DatabaseResize

SNAPSHOT = "demo-redis-pre-resize-cache-t4g-micro"


def clear_calls(sandbox: str) -> None:
    requests.delete(f"{sandbox}/_phasegate/calls", timeout=10).raise_for_status()


def mutating_calls(sandbox: str) -> list[str]:
    calls = requests.get(f"{sandbox}/_phasegate/calls", timeout=10).json()
    return [f"{c['service']}:{c['action']}" for c in calls if is_mutating(c["action"])]


def group(ctx: StepContext) -> dict:
    return ctx.clients.elasticache.describe_replication_groups(ReplicationGroupId="demo-redis")[
        "ReplicationGroups"
    ][0]


def snapshots(ctx: StepContext) -> dict[str, dict]:
    found = ctx.clients.elasticache.describe_snapshots(ReplicationGroupId="demo-redis")
    return {s["SnapshotName"]: s for s in found["Snapshots"]}


def snapshot_tags(ctx: StepContext, name: str) -> dict[str, str]:
    arn = snapshots(ctx)[name]["ARN"]
    tags = ctx.clients.elasticache.list_tags_for_resource(ResourceName=arn)["TagList"]
    return {t["Key"]: t["Value"] for t in tags}


def with_target(config: EnvironmentConfig, node_type: str) -> EnvironmentConfig:
    """`config` asking for another node type, validated as a config file would be."""
    targets = Targets(**{**config.targets.model_dump(), "redis_node_type": node_type})
    return config.model_copy(update={"targets": targets})


@pytest.fixture
def ctx(seeded: EnvironmentConfig) -> StepContext:
    return StepContext.for_environment(seeded)


def test_sandbox_answers_allowed_node_type_modifications(ctx: StepContext) -> None:
    """moto lacks ListAllowedNodeTypeModifications; the sandbox front answers it like AWS."""
    elasticache = ctx.clients.elasticache
    found = elasticache.list_allowed_node_type_modifications(ReplicationGroupId="demo-redis")
    assert "cache.t4g.micro" in found["ScaleUpModifications"]
    assert "cache.t3.micro" not in found["ScaleUpModifications"] + found["ScaleDownModifications"]
    with pytest.raises(AwsCallError) as missing:
        elasticache.list_allowed_node_type_modifications(ReplicationGroupId="nope")
    assert missing.value.code == "ReplicationGroupNotFoundFault"


def test_plan_is_read_only_and_prices_the_resize(ctx: StepContext, sandbox: str) -> None:
    step = CacheResize(ctx)
    assert step.target() == {"node_type": "cache.t4g.micro"}
    clear_calls(sandbox)

    change = plan(step)

    assert mutating_calls(sandbox) == []
    assert change is not None
    before = change.before["demo-redis"]
    assert (before["node_type"], before["node_count"]) == ("cache.t3.micro", 2)
    assert list(change.before) == ["demo-redis"]
    # 2 nodes x (0.016 - 0.017) $/hour x 730 hours.
    assert change.monthly_cost_delta == pytest.approx(-1.46)
    assert change.reversibility.restart_needed is False
    assert change.reversibility.rollback_possible is True
    assert change.reversibility.expected_disruption == (
        "node replacement; brief failover to the replica"
    )
    assert group(ctx)["CacheNodeType"] == "cache.t3.micro"


def test_execute_snapshots_then_resizes(ctx: StepContext) -> None:
    step = CacheResize(ctx)

    record = execute(step, key="t")

    assert record.outcome == "applied"
    rg = group(ctx)
    assert (rg["CacheNodeType"], rg["Status"]) == ("cache.t4g.micro", "available")
    found = snapshots(ctx)
    assert list(found) == [SNAPSHOT]
    assert found[SNAPSHOT]["SnapshotStatus"] == "available"
    assert found[SNAPSHOT]["CacheNodeType"] == "cache.t3.micro"  # taken before the resize
    assert snapshot_tags(ctx, SNAPSHOT)["Environment"] == "demo"
    assert record.after == {"demo-redis": {"node_type": "cache.t4g.micro", "snapshot": SNAPSHOT}}
    assert record.change is not None and record.change.monthly_cost_delta < 0
    assert set(record.api_actions) <= set(step.iam_actions)


def test_second_execute_changes_nothing(ctx: StepContext, sandbox: str) -> None:
    step = CacheResize(ctx)
    execute(step, key="t")
    clear_calls(sandbox)

    again = execute(step, key="t")

    assert again.outcome == "unchanged"
    assert mutating_calls(sandbox) == []
    assert list(snapshots(ctx)) == [SNAPSHOT]


def test_apply_retried_after_a_crash_reuses_the_snapshot(ctx: StepContext) -> None:
    class CrashAfterSnapshot(CacheResize):
        def _resize(self, group_id: str, node_type: str) -> None:
            raise RuntimeError("worker killed between snapshot and modify")

    change = plan(CacheResize(ctx))
    assert change is not None
    with pytest.raises(RuntimeError):
        CrashAfterSnapshot(ctx).apply(change)
    assert list(snapshots(ctx)) == [SNAPSHOT]
    assert group(ctx)["CacheNodeType"] == "cache.t3.micro"

    step = CacheResize(ctx)
    first = step.apply(change)
    second = step.apply(change)

    assert first == second == {"demo-redis": {"node_type": "cache.t4g.micro", "snapshot": SNAPSHOT}}
    assert list(snapshots(ctx)) == [SNAPSHOT]
    assert group(ctx)["CacheNodeType"] == "cache.t4g.micro"


def test_refuses_a_node_type_elasticache_does_not_allow(
    seeded: EnvironmentConfig, sandbox: str
) -> None:
    ctx = StepContext.for_environment(with_target(seeded, "cache.x2gd.large"))
    clear_calls(sandbox)

    with pytest.raises(StepFailed) as failed:
        execute(CacheResize(ctx), key="t")

    assert isinstance(failed.value.cause, StepRefused)
    for part in ("demo", "cache.resize", "demo-redis", "cache.t3.micro", "cache.x2gd.large"):
        assert part in str(failed.value)
    assert mutating_calls(sandbox) == []
    assert group(ctx)["CacheNodeType"] == "cache.t3.micro"
    assert snapshots(ctx) == {}


def test_undo_restores_the_node_type_and_keeps_the_snapshot(ctx: StepContext) -> None:
    step = CacheResize(ctx)
    execute(step, key="t")

    with recording_calls() as calls:
        undo(step)

    rg = group(ctx)
    assert (rg["CacheNodeType"], rg["Status"]) == ("cache.t3.micro", "available")
    assert list(snapshots(ctx)) == [SNAPSHOT]
    assert SUPERSEDED_TAG in snapshot_tags(ctx, SNAPSHOT)
    assert set(calls) <= set(step.iam_actions)

    again = execute(step, key="t2")
    assert again.after["demo-redis"]["snapshot"] == f"{SNAPSHOT}-2"
    assert sorted(snapshots(ctx)) == [SNAPSHOT, f"{SNAPSHOT}-2"]


def test_expected_disruption_names_groups_without_a_replica() -> None:
    lone = CacheGroup(
        id="solo",
        arn="arn:aws:elasticache:us-east-1:123456789012:replicationgroup:solo",
        node_type="cache.t3.micro",
        node_count=1,
        engine_version="7.1",
        status="available",
        member_clusters=["solo-001"],
    )
    assert "short outage" in CacheResize._disruption([lone])
    assert "solo" in CacheResize._disruption([lone])


def test_database_and_cache_resize_concurrently_on_one_context(ctx: StepContext) -> None:
    """The two phase-1 resizes are independent: run them in two threads, sharing clients."""
    steps = [DatabaseResize(ctx), CacheResize(ctx)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        records = list(pool.map(lambda s: execute(s, key=f"t-{s.id}"), steps))

    assert [r.outcome for r in records] == ["applied", "applied"]
    # Each Record lists only its own step's calls, though both ran at once.
    assert all(a.startswith("rds:") for a in records[0].api_actions)
    assert all(a.startswith("elasticache:") for a in records[1].api_actions)
    db = ctx.clients.rds.describe_db_instances(DBInstanceIdentifier="demo-db")["DBInstances"][0]
    assert db["DBInstanceClass"] == "db.t4g.micro"
    assert group(ctx)["CacheNodeType"] == "cache.t4g.micro"
