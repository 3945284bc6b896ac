"""database.connections against the sandbox over HTTP: the tuned group of the instance's family
with the configured values (read back from DescribeDBParameters), attached; pending-reboot
unless the config allows a reboot in the window (then its own approval); a re-run changes
nothing; rollback attaches the previous group and deletes ours."""

from pathlib import Path

import pytest
import requests
from conftest import write_environment

from phasegate.approvals import ApprovalPolicy
from phasegate.config import EnvironmentConfig, parse_environment
from phasegate.lifecycle import condition, execute, plan, undo
from phasegate.sandbox.app import is_mutating
from phasegate.steps import CREATED_BY_TAG, StepContext
from tasks.connection_limits import max_connections
from tasks.db_connections import DatabaseConnections

GROUP = "demo-db-postgres16-connections"


def calls(sandbox: str) -> list[str]:
    return [c["action"] for c in requests.get(f"{sandbox}/_phasegate/calls", timeout=10).json()]


def clear_calls(sandbox: str) -> None:
    requests.delete(f"{sandbox}/_phasegate/calls", timeout=10).raise_for_status()


def attached(ctx: StepContext) -> dict:
    db = ctx.clients.rds.describe_db_instances(DBInstanceIdentifier="demo-db")["DBInstances"][0]
    return db["DBParameterGroups"][0]


def values(ctx: StepContext) -> dict[str, str]:
    found = ctx.clients.rds.describe_db_parameters(DBParameterGroupName=GROUP)["Parameters"]
    return {p["ParameterName"]: p["ParameterValue"] for p in found}


def groups(ctx: StepContext) -> list[str]:
    found = ctx.clients.rds.describe_db_parameter_groups()["DBParameterGroups"]
    return sorted(g["DBParameterGroupName"] for g in found)


def config_with(tmp_path: Path, sandbox: str, **database: object) -> EnvironmentConfig:
    return parse_environment(write_environment(tmp_path, "demo", sandbox, database=database))


def test_max_connections_follows_the_class_memory() -> None:
    assert max_connections("db.t4g.micro", 9.09) == 112  # 1024 MiB, RDS's own default
    assert max_connections("db.t4g.medium", 9.09) == 450
    assert max_connections("db.r6g.large", 9.09) == 1802  # 16 GiB
    assert max_connections("db.t4g.micro", 1000) == 20  # never below 20


def test_tuned_group_attached_pending_reboot_then_rolled_back(
    seeded: EnvironmentConfig, sandbox: str, tmp_path: Path
) -> None:
    config = config_with(
        tmp_path,
        sandbox,
        idle_in_transaction_session_timeout_ms=30000,
        tcp_keepalives_idle_seconds=45,
        log_min_duration_statement_ms=500,
    )
    ctx = StepContext.for_environment(config)
    step = DatabaseConnections(ctx)
    before = groups(ctx)
    assert attached(ctx)["DBParameterGroupName"] == "default.postgres16"
    clear_calls(sandbox)
    change = plan(step)
    assert [a for a in calls(sandbox) if is_mutating(a)] == []
    assert change is not None and change.monthly_cost_delta == 0
    assert change.reversibility.restart_needed is False
    assert any("pending-reboot" in a for a in change.actions)

    record = execute(step, key="t")

    assert record.outcome == "applied"
    assert values(ctx) == {
        "max_connections": "112",  # db.t3.micro: 1 GiB
        "idle_in_transaction_session_timeout": "30000",
        "tcp_keepalives_idle": "45",
        "log_min_duration_statement": "500",
    }
    assert attached(ctx) == {
        "DBParameterGroupName": GROUP,
        "ParameterApplyStatus": "pending-reboot",
    }
    assert record.after["demo-db"]["apply_status"] == "pending-reboot"
    group = ctx.clients.rds.describe_db_parameter_groups(DBParameterGroupName=GROUP)[
        "DBParameterGroups"
    ][0]
    assert group["DBParameterGroupFamily"] == "postgres16"
    tags = ctx.clients.rds.list_tags_for_resource(ResourceName=group["DBParameterGroupArn"])
    assert {"Key": CREATED_BY_TAG, "Value": "database.connections"} in tags["TagList"]
    assert "RebootDBInstance" not in calls(sandbox)
    assert set(record.api_actions) <= set(step.iam_actions)

    clear_calls(sandbox)
    assert execute(DatabaseConnections(ctx), key="t").outcome == "unchanged"
    assert [a for a in calls(sandbox) if is_mutating(a)] == []

    # A value changed by hand is drift, named by group and parameter.
    ctx.clients.rds.modify_db_parameter_group(
        DBParameterGroupName=GROUP,
        Parameters=[
            {
                "ParameterName": "tcp_keepalives_idle",
                "ParameterValue": "7200",
                "ApplyMethod": "immediate",
            }
        ],
    )
    verdict, error = condition(step, record)
    assert verdict == "drifted" and error is not None
    assert error.diff == {f"{GROUP}.tcp_keepalives_idle": {"recorded": "45", "found": "7200"}}

    undo(step)

    assert attached(ctx)["DBParameterGroupName"] == "default.postgres16"
    assert groups(ctx) == before


def test_reboot_in_window_is_its_own_approval_and_leaves_it_in_sync(
    seeded: EnvironmentConfig, sandbox: str, tmp_path: Path
) -> None:
    config = config_with(tmp_path, sandbox, reboot="in-window")
    assert ApprovalPolicy.for_run(config).needs_step_approval("database.connections")
    assert not ApprovalPolicy.for_run(seeded).needs_step_approval("database.connections")
    ctx = StepContext.for_environment(config)
    step = DatabaseConnections(ctx)
    change = plan(step)
    assert change is not None and change.reversibility.restart_needed is True
    clear_calls(sandbox)

    record = execute(step, key="t")

    assert "RebootDBInstance" in calls(sandbox)
    assert attached(ctx) == {"DBParameterGroupName": GROUP, "ParameterApplyStatus": "in-sync"}
    assert record.after["demo-db"]["apply_status"] == "in-sync"
    clear_calls(sandbox)

    undo(step)

    assert attached(ctx) == {
        "DBParameterGroupName": "default.postgres16",
        "ParameterApplyStatus": "in-sync",
    }
    assert "RebootDBInstance" in calls(sandbox)


@pytest.mark.parametrize(
    ("database", "field"),
    [
        ({"memory_per_connection_mib": 0}, "database.memory_per_connection_mib"),
        ({"reboot": "sometimes"}, "database.reboot"),
    ],
)
def test_bad_database_values_name_the_field(
    sandbox: str, tmp_path: Path, database: dict, field: str
) -> None:
    from phasegate.errors import ConfigError

    path = write_environment(tmp_path, "demo", sandbox, database=database)
    with pytest.raises(ConfigError) as bad:
        parse_environment(path)
    assert str(bad.value).startswith(f"{path}: {field}: ") or f": {field}: " in str(bad.value)


def test_a_group_that_was_there_keeps_its_old_values_after_rollback(
    seeded: EnvironmentConfig, sandbox: str
) -> None:
    ctx = StepContext.for_environment(seeded)
    rds = ctx.clients.rds
    rds.create_db_parameter_group(
        DBParameterGroupName=GROUP, DBParameterGroupFamily="postgres16", Description="by hand"
    )
    rds.modify_db_parameter_group(DBParameterGroupName=GROUP, Parameters=[
        {"ParameterName": "max_connections", "ParameterValue": "50",
         "ApplyMethod": "pending-reboot"}])  # fmt: skip
    step = DatabaseConnections(ctx)

    execute(step, key="t")
    assert values(ctx)["max_connections"] == "112"
    assert attached(ctx)["DBParameterGroupName"] == GROUP

    undo(step)

    assert attached(ctx)["DBParameterGroupName"] == "default.postgres16"
    assert GROUP in groups(ctx)  # not ours to delete
    assert values(ctx)["max_connections"] == "50"
