"""database.resize against the sandbox: snapshot, resize, idempotence, refusal, rollback.

Mutating calls are counted at the sandbox server (its call log), not in the client, so a
call the step makes by any route is seen.
"""

import pytest
import requests

from phasegate.aws import recording_calls
from phasegate.config import EnvironmentConfig, Targets
from phasegate.errors import WaitTimeout
from phasegate.inventory import Database
from phasegate.lifecycle import StepFailed, execute, plan, undo
from phasegate.sandbox.app import is_mutating
from phasegate.steps import StepContext, StepRefused
from tasks.database import SUPERSEDED_TAG, DatabaseResize

SNAPSHOT = "demo-db-pre-resize-db-t4g-micro"


def clear_calls(sandbox: str) -> None:
    requests.delete(f"{sandbox}/_phasegate/calls", timeout=10).raise_for_status()


def mutating_calls(sandbox: str) -> list[str]:
    calls = requests.get(f"{sandbox}/_phasegate/calls", timeout=10).json()
    return [f"{c['service']}:{c['action']}" for c in calls if is_mutating(c["action"])]


def instance(ctx: StepContext) -> dict:
    return ctx.clients.rds.describe_db_instances(DBInstanceIdentifier="demo-db")["DBInstances"][0]


def manual_snapshots(ctx: StepContext) -> dict[str, dict]:
    found = ctx.clients.rds.describe_db_snapshots(
        DBInstanceIdentifier="demo-db", SnapshotType="manual"
    )["DBSnapshots"]
    return {s["DBSnapshotIdentifier"]: s for s in found}


def with_target(config: EnvironmentConfig, rds_class: str) -> EnvironmentConfig:
    """`config` asking for another RDS class, validated as a config file would be."""
    targets = Targets(**{**config.targets.model_dump(), "rds_instance_class": rds_class})
    return config.model_copy(update={"targets": targets})


@pytest.fixture
def ctx(seeded: EnvironmentConfig) -> StepContext:
    return StepContext.for_environment(seeded)


def test_plan_is_read_only_and_prices_the_resize(ctx: StepContext, sandbox: str) -> None:
    step = DatabaseResize(ctx)
    assert step.target() == {"instance_class": "db.t4g.micro"}
    clear_calls(sandbox)

    change = plan(step)

    assert mutating_calls(sandbox) == []
    assert change is not None
    assert change.before == {
        "demo-db": {
            "instance_class": "db.t3.micro",
            "engine": "postgres",
            "engine_version": "16.4",
            "multi_az": False,
        }
    }
    assert change.desired == {"instance_class": "db.t4g.micro"}
    # (0.016 - 0.018) $/hour x 730 hours, single-AZ: the instance line only.
    assert change.monthly_cost_delta == pytest.approx(-1.46)
    assert change.reversibility.restart_needed is True
    assert change.reversibility.rollback_possible is True
    assert "single-AZ" in change.reversibility.expected_disruption
    assert any(SNAPSHOT in action for action in change.actions)
    assert instance(ctx)["DBInstanceClass"] == "db.t3.micro"


def test_execute_snapshots_then_resizes(ctx: StepContext) -> None:
    step = DatabaseResize(ctx)

    record = execute(step, key="t")

    assert record.outcome == "applied"
    db = instance(ctx)
    assert (db["DBInstanceClass"], db["DBInstanceStatus"]) == ("db.t4g.micro", "available")
    snapshots = manual_snapshots(ctx)
    assert list(snapshots) == [SNAPSHOT]
    assert snapshots[SNAPSHOT]["Status"] == "available"
    tags = {t["Key"]: t["Value"] for t in snapshots[SNAPSHOT]["TagList"]}
    assert tags["Environment"] == "demo"
    assert record.before["demo-db"]["instance_class"] == "db.t3.micro"
    assert record.after == {"demo-db": {"instance_class": "db.t4g.micro", "snapshot": SNAPSHOT}}
    assert record.change is not None and record.change.monthly_cost_delta < 0
    # The step's IAM list covers every action it really called.
    assert set(record.api_actions) <= set(step.iam_actions)
    assert "rds:CreateDBSnapshot" in record.api_actions


def test_second_execute_changes_nothing(ctx: StepContext, sandbox: str) -> None:
    step = DatabaseResize(ctx)
    execute(step, key="t")
    clear_calls(sandbox)

    again = execute(step, key="t")

    assert again.outcome == "unchanged"
    assert again.change is None
    assert mutating_calls(sandbox) == []
    assert list(manual_snapshots(ctx)) == [SNAPSHOT]


def test_apply_retried_after_a_crash_reuses_the_snapshot(ctx: StepContext) -> None:
    class CrashAfterSnapshot(DatabaseResize):
        def _resize(self, identifier: str, instance_class: str) -> None:
            raise RuntimeError("worker killed between snapshot and modify")

    change = plan(DatabaseResize(ctx))
    assert change is not None
    with pytest.raises(RuntimeError):
        CrashAfterSnapshot(ctx).apply(change)
    assert list(manual_snapshots(ctx)) == [SNAPSHOT]
    assert instance(ctx)["DBInstanceClass"] == "db.t3.micro"

    step = DatabaseResize(ctx)
    first = step.apply(change)
    second = step.apply(change)  # a retry after the change went through is harmless too

    assert first == second == {"demo-db": {"instance_class": "db.t4g.micro", "snapshot": SNAPSHOT}}
    assert list(manual_snapshots(ctx)) == [SNAPSHOT]
    assert instance(ctx)["DBInstanceClass"] == "db.t4g.micro"


def test_refuses_a_class_the_engine_version_does_not_offer(
    seeded: EnvironmentConfig, sandbox: str
) -> None:
    # db.x2g.large is a valid Graviton class, but the sandbox's orderable table (like RDS
    # for this engine version) does not list it; nor does the price table.
    ctx = StepContext.for_environment(with_target(seeded, "db.x2g.large"))
    step = DatabaseResize(ctx)
    clear_calls(sandbox)

    with pytest.raises(StepFailed) as failed:
        execute(step, key="t")

    assert isinstance(failed.value.cause, StepRefused)
    message = str(failed.value)
    for part in ("demo", "database.resize", "demo-db", "postgres 16.4", "db.x2g.large"):
        assert part in message
    assert mutating_calls(sandbox) == []
    assert instance(ctx)["DBInstanceClass"] == "db.t3.micro"
    assert manual_snapshots(ctx) == {}


def test_apply_refuses_before_touching_anything(seeded: EnvironmentConfig, sandbox: str) -> None:
    """A Change approved earlier is re-checked at apply time, before any snapshot."""
    ctx = StepContext.for_environment(seeded)
    change = plan(DatabaseResize(ctx))
    assert change is not None
    stale = change.model_copy(update={"desired": {"instance_class": "db.r7g.large"}})
    clear_calls(sandbox)

    with pytest.raises(StepRefused, match=r"demo-db .*16\.4.*db\.r7g\.large"):
        DatabaseResize(ctx).apply(stale)

    assert mutating_calls(sandbox) == []


def test_undo_restores_the_class_and_keeps_the_snapshot(ctx: StepContext) -> None:
    step = DatabaseResize(ctx)
    execute(step, key="t")

    undo(step)

    db = instance(ctx)
    assert (db["DBInstanceClass"], db["DBInstanceStatus"]) == ("db.t3.micro", "available")
    snapshots = manual_snapshots(ctx)
    assert list(snapshots) == [SNAPSHOT]
    assert SUPERSEDED_TAG in {t["Key"] for t in snapshots[SNAPSHOT]["TagList"]}
    undo(step)  # rolling back twice is harmless
    assert instance(ctx)["DBInstanceClass"] == "db.t3.micro"

    # Resizing again takes a fresh snapshot: the kept one predates the rollback.
    again = execute(step, key="t2")
    assert again.after["demo-db"]["snapshot"] == f"{SNAPSHOT}-2"
    assert sorted(manual_snapshots(ctx)) == [SNAPSHOT, f"{SNAPSHOT}-2"]
    assert instance(ctx)["DBInstanceClass"] == "db.t4g.micro"


def test_undo_calls_only_what_iam_actions_allow(ctx: StepContext) -> None:
    step = DatabaseResize(ctx)
    execute(step, key="t")
    with recording_calls() as calls:
        undo(step)
    assert "rds:ModifyDBInstance" in calls
    assert set(calls) <= set(step.iam_actions)


def test_a_wait_that_never_settles_times_out_naming_the_database(
    seeded: EnvironmentConfig,
) -> None:
    phases = seeded.phases.model_copy(update={"step_timeout_seconds": 0.2})
    ctx = StepContext.for_environment(seeded.model_copy(update={"phases": phases}))

    class NeverSettles(DatabaseResize):
        def _require(self, identifier: str) -> dict:
            return {**super()._require(identifier), "DBInstanceStatus": "modifying"}

    with pytest.raises(StepFailed) as failed:
        execute(NeverSettles(ctx), key="t")
    assert isinstance(failed.value.cause, WaitTimeout)
    assert "demo-db" in str(failed.value)


def _db(identifier: str, multi_az: bool) -> Database:
    return Database(
        identifier=identifier,
        arn=f"arn:aws:rds:us-east-1:123456789012:db:{identifier}",
        instance_class="db.t3.micro",
        engine="postgres",
        engine_version="16.4",
        multi_az=multi_az,
        allocated_storage_gb=20,
        storage_type="gp3",
        status="available",
    )


def test_expected_disruption_depends_on_multi_az() -> None:
    single = DatabaseResize._disruption([_db("a", False)])
    multi = DatabaseResize._disruption([_db("b", True)])
    both = DatabaseResize._disruption([_db("a", False), _db("b", True)])
    assert single == "a few minutes of unavailability while the instance class changes (single-AZ)"
    assert "Multi-AZ fails over" in multi and "single-AZ" not in multi
    assert "single-AZ): a" in both and "b" in both.split(";")[1]
