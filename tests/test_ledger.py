"""The rollback ledger on the sandbox over HTTP: changes by hand, targets changed, drift,
approved plans, and rollback back to the state before phasegate first touched anything."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError, ParamValidationError, WaiterError
from conftest import write_environment
from flowruns import FlowThread, stop_all
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort
from typer.testing import CliRunner

from flows.migration import migration
from flows.phase1 import phase1
from flows.rollback import rollback_phase
from phasegate.aws import AwsClients
from phasegate.checkpoints import checkpoint_storage
from phasegate.cli import app
from phasegate.config import AwsSettings, EnvironmentConfig, parse_environment
from phasegate.inventory import discover
from phasegate.ledger import Ledger
from phasegate.lifecycle import StepFailed, checkpoint, execute, plan, undo
from phasegate.sandbox.app import is_mutating
from phasegate.sandbox.seed import seed_environment
from phasegate.steps import PlanChanged, StepContext
from tasks.approvals import artifact_key, resume_with
from tasks.cache import CacheResize
from tasks.database import DatabaseResize
from tasks.runner import worth_retrying

SMALL = {"rds_instance_class": "db.t4g.small", "redis_node_type": "cache.t4g.small"}


def sizes(config: EnvironmentConfig) -> tuple[str, str]:
    inventory = discover(config)
    return inventory.databases[0].instance_class, inventory.caches[0].node_type


def calls(sandbox: str) -> list[str]:
    return [c["action"] for c in requests.get(f"{sandbox}/_phasegate/calls", timeout=10).json()]


def clear_calls(sandbox: str) -> None:
    requests.delete(f"{sandbox}/_phasegate/calls", timeout=10).raise_for_status()


@pytest.fixture
def demo(sandbox: str, tmp_path: Path) -> EnvironmentConfig:
    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=sandbox))
    seed_environment(clients, "demo", 1)
    return parse_environment(write_environment(tmp_path, "demo", sandbox))


def retarget(config: EnvironmentConfig, tmp_path: Path, **targets: str) -> EnvironmentConfig:
    """The same environment file, rewritten with other targets."""
    assert config.aws.endpoint_url is not None
    return parse_environment(
        write_environment(tmp_path, config.name, config.aws.endpoint_url, targets=targets)
    )


def test_targets_changed_twice_roll_back_to_the_original_sizes_in_one_step(
    demo: EnvironmentConfig, sandbox: str, tmp_path: Path
) -> None:
    for config in (demo, retarget(demo, tmp_path, **SMALL)):
        for step in (DatabaseResize, CacheResize):
            assert execute(step(StepContext.for_environment(config)), "k").outcome == "applied"
    assert sizes(demo) == ("db.t4g.small", "cache.t4g.small")
    chain = Ledger(demo).chain(1, "database.resize")
    assert [r.outcome for r in chain] == [
        "intent", "progress", "applied", "intent", "progress", "applied",
    ]  # fmt: skip
    assert [r.previous for r in chain] == [None, 1, 2, 3, 4, 5]

    clear_calls(sandbox)
    ctx = StepContext.for_environment(demo)
    assert undo(DatabaseResize(ctx)) == "rolled back"
    assert undo(CacheResize(ctx)) == "rolled back"
    assert sizes(demo) == ("db.t3.micro", "cache.t3.micro")
    # Straight back: one modify each, never through the intermediate t4g.micro.
    assert calls(sandbox).count("ModifyDBInstance") == 1
    assert calls(sandbox).count("ModifyReplicationGroup") == 1
    head = Ledger(demo).head(1, "database.resize")
    assert head is not None and head.outcome == "rolled_back" and head.after == {"undone": [6, 3]}
    # Both pre-resize snapshots are kept, marked superseded: neither is reused later.
    snapshots = AwsClients(demo.aws).rds.describe_db_snapshots(
        DBInstanceIdentifier="demo-db", SnapshotType="manual"
    )
    tagged = {
        s["DBSnapshotIdentifier"]: {t["Key"] for t in s.get("TagList", [])}
        for s in snapshots["DBSnapshots"]
    }
    assert len(tagged) == 2 and all(
        "phasegate:superseded-by-rollback" in t for t in tagged.values()
    )
    assert undo(DatabaseResize(ctx)) == "nothing to undo"


@pytest.mark.usefixtures("prefect_client_env")
def test_hand_change_then_new_targets_then_rollback_restores_what_was_there_before(
    demo: EnvironmentConfig, sandbox: str, tmp_path: Path
) -> None:
    """The field report: phase 1, the class changed by hand, targets changed, phase 1 again,
    rollback: the database and Redis are back at db.t3.micro and cache.t3.micro."""
    before = discover(demo)
    env = str(demo.source)
    with checkpoint_storage(demo):
        phase1(env)
        AwsClients(demo.aws).rds.modify_db_instance(
            DBInstanceIdentifier="demo-db", DBInstanceClass="db.t4g.medium", ApplyImmediately=True
        )
        retarget(demo, tmp_path, **SMALL)
        phase1(env)
        assert sizes(demo) == ("db.t4g.small", "cache.t4g.small")

        drift = Ledger(demo).last_drift(1, "database.resize")
        assert drift is None  # planned again and applied since: the newest verdict holds
        outcomes = [r.outcome for r in Ledger(demo).chain(1, "database.resize")]
        assert outcomes == [
            "intent",
            "progress",
            "applied",
            "drift",
            "intent",
            "progress",
            "applied",
        ]
        [record] = [r for r in Ledger(demo).chain(1, "database.resize") if r.outcome == "drift"]
        assert record.diff == {
            "demo-db.instance_class": {"recorded": "db.t4g.micro", "found": "db.t4g.medium"}
        }

        result = CliRunner().invoke(app, ["history", env, "--step", "database.resize"])
        assert result.exit_code == 0, result.output
        assert "drift" in result.output and "db.t4g.medium" in result.output
        chains = json.loads(CliRunner().invoke(app, ["history", env, "--json"]).output)
        assert set(chains) >= {"nat.remove", "database.resize", "cache.resize"}

        outcome = rollback_phase(env, 1)
    assert outcome["database.resize"] == outcome["cache.resize"] == "rolled back"
    assert sizes(demo) == ("db.t3.micro", "cache.t3.micro")
    after = discover(demo)
    assert len(after.nat_gateways) == len(before.nat_gateways) == 2
    assert [s.architecture for s in after.services] == ["X86_64"]


def test_a_hand_change_is_drift_with_its_diff_and_rollback_still_restores(
    demo: EnvironmentConfig,
) -> None:
    ctx = StepContext.for_environment(demo)
    step = DatabaseResize(ctx)
    execute(step, "k")
    AwsClients(demo.aws).rds.modify_db_instance(
        DBInstanceIdentifier="demo-db", DBInstanceClass="db.t3.small", ApplyImmediately=True
    )
    assert checkpoint(step) is None  # drifted: never a reason to skip
    drift = Ledger(demo).last_drift(1, "database.resize")
    assert drift is not None
    assert drift.diff == {
        "demo-db.instance_class": {"recorded": "db.t4g.micro", "found": "db.t3.small"}
    }
    assert undo(step) == "rolled back"
    assert sizes(demo)[0] == "db.t3.micro"


def test_a_change_other_than_the_approved_one_stops_before_any_change(
    demo: EnvironmentConfig, sandbox: str
) -> None:
    step = DatabaseResize(StepContext.for_environment(demo))
    approved = plan(step)
    assert approved is not None
    AwsClients(demo.aws).rds.modify_db_instance(
        DBInstanceIdentifier="demo-db", DBInstanceClass="db.t3.small", ApplyImmediately=True
    )
    clear_calls(sandbox)
    with pytest.raises(StepFailed) as failed:
        execute(step, "k", approved_digest=approved.digest())
    assert isinstance(failed.value.cause, PlanChanged)
    assert "differs from the approved plan" in str(failed.value)
    assert [c for c in calls(sandbox) if is_mutating(c)] == []
    assert Ledger(demo).chain(1, "database.resize") == []


@pytest.fixture
def started() -> Iterator[list[FlowThread]]:
    threads: list[FlowThread] = []
    yield threads
    stop_all(threads, lambda run_id: resume_with(run_id, False, "test-teardown"), timeout=180)


@pytest.mark.usefixtures("prefect_client_env")
def test_approved_then_changed_by_hand_asks_again_naming_the_difference(
    sandbox: str, tmp_path: Path, started: list[FlowThread]
) -> None:
    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=sandbox))
    seed_environment(clients, "stage", 1)
    config = parse_environment(write_environment(tmp_path, "stage", sandbox, tier="staging"))

    def run() -> Any:
        with checkpoint_storage(config):
            return migration(str(config.source), phases=[1])

    started.append(FlowThread(run, label="stage"))
    run_id = started[0].wait_paused(timeout=120)
    clients.rds.modify_db_instance(
        DBInstanceIdentifier="stage-db", DBInstanceClass="db.t3.small", ApplyImmediately=True
    )
    resume_with(run_id, True, "ana")
    started[0].wait_paused(timeout=120)  # asked again
    with get_client(sync_client=True) as client:
        forms = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[artifact_key("stage", 1)])),
            sort=ArtifactSort.CREATED_DESC,
        )
    form = str(forms[0].data)
    assert "Asked again" in form
    assert "before.stage-db.instance_class: approved 'db.t3.micro', now 'db.t3.small'" in form
    assert len(discover(config).nat_gateways) == 2  # nothing was changed
    assert discover(config).databases[0].instance_class == "db.t3.small"


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (ParamValidationError(report="Missing required parameter"), False),
        (WaiterError("db_instance_available", "Waiter encountered a terminal failure", {}), False),
        (KeyError("DBInstances"), False),
        (ClientError({"Error": {"Code": "Throttling"}}, "DescribeDBInstances"), True),
        (ClientError({"Error": {"Code": "InvalidParameterValue"}}, "ModifyDBInstance"), False),
        (StepFailed("demo", "database.resize", PlanChanged("changed")), False),
    ],
)
def test_only_what_another_try_can_fix_is_retried(error: BaseException, retry: bool) -> None:
    assert worth_retrying(error) is retry
