"""`phasegate failover ENV --to REGION` against the sandbox over HTTP and a real Prefect server:
the plan it shows (promotion, Route 53 left as it is, irreversible), the approval it asks for
(and never skips in prod), the promotion AWS then shows (a standalone, available database the
primary no longer lists), its ledger chain, a second call that changes nothing, and bad input
refused in one line with exit 2 and nothing changed.

The second region is made directly with boto3 (a tagged cross-region replica and failover
records with health checks), as regions.expand leaves it; the last test makes it with the
regions.expand sub-steps themselves. Gates read the second region once it holds something."""

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import write_environment
from flowruns import FlowThread, stop_all
from typer.testing import CliRunner

from flows.failover import failover
from phasegate.approvals import ApprovalRejected
from phasegate.aws import AwsClients
from phasegate.cli import app
from phasegate.config import AwsSettings, EnvironmentConfig, parse_environment
from phasegate.config_phase3 import Regions
from phasegate.errors import PhasegateError
from phasegate.failover import (
    FAILOVER_PHASE,
    FAILOVER_STEP,
    IAM_ACTIONS,
    PROMOTED_TAG,
    plan_failover,
)
from phasegate.gates import HealthGate
from phasegate.inventory import discover
from phasegate.ledger import Ledger
from phasegate.lifecycle import execute
from phasegate.region_cost import monthly_cost_of_secondary
from phasegate.sandbox.app import is_mutating
from phasegate.sandbox.seed import hosted_zone_name, seed_hosted_zone
from phasegate.sandbox.simulator import WorkloadSimulator
from phasegate.steps import Record, StepContext
from tasks.approvals import resume_with
from tasks.registry import STEPS, ordered

pytestmark = pytest.mark.timeout(600)

CENT = 0.01
REGIONS = {"secondary": "us-west-2", "hosted_zone": "example.com.", "record_name": "api"}
TAGS = [{"Key": "Environment", "Value": "demo"}, {"Key": "PhasegateRole", "Value": "secondary"}]


def mutating_calls(sandbox: str) -> list[str]:
    calls = requests.get(f"{sandbox}/_phasegate/calls", timeout=10).json()
    return [f"{c['service']}:{c['action']}" for c in calls if is_mutating(c["action"])]


def west_clients(sandbox: str) -> AwsClients:
    return AwsClients(AwsSettings(region="us-west-2", endpoint_url=sandbox))


def replica(sandbox: str) -> dict[str, Any]:
    return west_clients(sandbox).rds.describe_db_instances(DBInstanceIdentifier="demo-db-west")[
        "DBInstances"
    ][0]


@pytest.fixture
def standby(seeded: EnvironmentConfig, sandbox: str, tmp_path: Path) -> Path:
    """The demo environment with a second region: its replica and the failover records."""
    east = AwsClients(AwsSettings(region="us-east-1", endpoint_url=sandbox))
    primary = east.rds.describe_db_instances(DBInstanceIdentifier="demo-db")["DBInstances"][0]
    west_clients(sandbox).rds.create_db_instance_read_replica(
        DBInstanceIdentifier="demo-db-west",
        SourceDBInstanceIdentifier=primary["DBInstanceArn"],
        DBInstanceClass="db.t3.micro",
        Tags=TAGS,
    )
    route53 = east.route53
    zone = route53.create_hosted_zone(Name="example.com.", CallerReference="failover-test")
    changes = []
    for role, target in (("PRIMARY", "demo-alb.us-east-1"), ("SECONDARY", "demo-alb.us-west-2")):
        check = route53.create_health_check(
            CallerReference=f"hc-{role}",
            HealthCheckConfig={
                "Type": "HTTP",
                "FullyQualifiedDomainName": f"{target}.elb.amazonaws.com",
                "ResourcePath": "/health",
            },
        )["HealthCheck"]["Id"]
        record = {
            "Name": "api.example.com.",
            "Type": "CNAME",
            "SetIdentifier": role.lower(),
            "Failover": role,
            "TTL": 60,
            "HealthCheckId": check,
            "ResourceRecords": [{"Value": f"{target}.elb.amazonaws.com"}],
        }
        changes.append({"Action": "CREATE", "ResourceRecordSet": record})
    route53.change_resource_record_sets(
        HostedZoneId=zone["HostedZone"]["Id"], ChangeBatch={"Changes": changes}
    )
    return write_environment(tmp_path, "demo", sandbox, regions=REGIONS)


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, ["failover", *args], env={"COLUMNS": "200"})


@pytest.mark.usefixtures("prefect_client_env")
def test_failover_promotes_the_replica_records_it_and_is_done_once(
    standby: Path, sandbox: str
) -> None:
    assert replica(sandbox)["ReadReplicaSourceDBInstanceIdentifier"].endswith(":db:demo-db")
    requests.delete(f"{sandbox}/_phasegate/calls", timeout=10).raise_for_status()

    result = cli(str(standby), "--to", "us-west-2", "--auto-approve")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "promote demo-db-west (db.t3.micro) in us-west-2" in out
    assert "IRREVERSIBLE" in out
    assert "Route 53 PRIMARY record api.example.com. -> demo-alb.us-east-1" in out
    assert "Route 53 SECONDARY record api.example.com. -> demo-alb.us-west-2" in out
    assert "demo: demo-db-west in us-west-2 promoted to a standalone database" in out
    assert mutating_calls(sandbox) == [
        "rds:PromoteReadReplica",
        "rds:AddTagsToResource",
        "rds:RemoveTagsFromResource",
    ]

    promoted = replica(sandbox)
    assert promoted["DBInstanceStatus"] == "available"
    assert "ReadReplicaSourceDBInstanceIdentifier" not in promoted
    assert {"Key": PROMOTED_TAG, "Value": FAILOVER_STEP} in promoted["TagList"]
    east = AwsClients(AwsSettings(region="us-east-1", endpoint_url=sandbox))
    primary = east.rds.describe_db_instances(DBInstanceIdentifier="demo-db")["DBInstances"][0]
    assert primary["ReadReplicaDBInstanceIdentifiers"] == []

    chain = Ledger(parse_environment(standby)).chain(FAILOVER_PHASE, FAILOVER_STEP)
    assert [r.outcome for r in chain] == ["intent", "applied"]
    assert chain[-1].approver == "phasegate"
    assert chain[-1].after["standalone"] is True
    assert set(chain[-1].api_actions) <= set(IAM_ACTIONS)
    history = CliRunner().invoke(app, ["history", str(standby), "--step", FAILOVER_STEP])
    assert history.exit_code == 0, history.output
    assert "applied" in history.stdout

    requests.delete(f"{sandbox}/_phasegate/calls", timeout=10).raise_for_status()
    again = cli(str(standby), "--to", "us-west-2", "--auto-approve")
    assert again.exit_code == 0, again.output
    assert again.stdout.strip().splitlines() == [
        "demo: demo-db-west in us-west-2 was promoted by an earlier failover; nothing to do"
    ]
    assert mutating_calls(sandbox) == []


@pytest.mark.usefixtures("prefect_client_env")
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    standby: Path, sandbox: str, tmp_path: Path
) -> None:
    requests.delete(f"{sandbox}/_phasegate/calls", timeout=10).raise_for_status()
    (tmp_path / "prod").mkdir()
    (tmp_path / "alone").mkdir()
    prod = write_environment(tmp_path / "prod", "demo", sandbox, tier="prod", regions=REGIONS)
    alone = write_environment(tmp_path / "alone", "demo", sandbox)
    cases = {
        (str(standby), "us-east-1"): "'us-east-1' is not regions.secondary ('us-west-2')",
        (str(standby), "eu-west-1"): "'eu-west-1' is not regions.secondary",
        (str(alone), "us-west-2"): "regions.secondary is not set",
        (str(prod), "us-west-2"): "auto",  # prod never takes --auto-approve
    }
    west_clients(sandbox).rds.delete_db_instance(DBInstanceIdentifier="demo-db-west")
    cases[(str(standby), "us-west-2")] = "no read replica of"
    for (env, region), expected in cases.items():
        result = cli(env, "--to", region, "--auto-approve")
        assert result.exit_code == 2, (env, region, result.output)
        assert expected in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert mutating_calls(sandbox) == ["rds:DeleteDBInstance"]  # the test's own


@pytest.mark.usefixtures("prefect_client_env")
def test_without_auto_approve_it_asks_and_a_rejection_changes_nothing(
    standby: Path, sandbox: str
) -> None:
    started = FlowThread(lambda: failover(str(standby), "us-west-2"))
    try:
        run_id = started.wait_paused()
        resume_with(run_id, False, "bob", "not during the sale")
        started.join()
    finally:
        stop_all([started], lambda run: resume_with(run, False, "test-teardown"))
    assert isinstance(started.error, ApprovalRejected)
    assert "rejected by bob" in str(started.error)
    assert replica(sandbox)["ReadReplicaSourceDBInstanceIdentifier"].endswith(":db:demo-db")
    assert Ledger(parse_environment(standby)).chain(FAILOVER_PHASE, FAILOVER_STEP) == []


def test_gates_read_the_second_region_which_the_simulator_publishes(standby: Path) -> None:
    config = parse_environment(standby)
    fast = config.model_copy(
        update={"gates": config.gates.model_copy(update={"interval_seconds": 1, "count": 2})}
    )
    primary_only = fast.model_copy(update={"regions": Regions()})
    now = datetime.now(UTC)
    WorkloadSimulator(lambda: [primary_only], backfill_minutes=10).tick(now)

    blind = HealthGate(fast).evaluate(now=now, sleep=lambda _: None)
    assert blind.verdict == "fail"  # the standby has no metrics: inconclusive, never a pass
    assert "rds-cpu on demo-db-west (us-west-2)" in blind.reason
    assert HealthGate(primary_only).evaluate(now=now, sleep=lambda _: None).verdict == "pass"

    sent = WorkloadSimulator(lambda: [fast], backfill_minutes=10).tick(now)
    # CPU, connections and lag of the replica, its first minute only: a standby is new, so
    # it is never backfilled
    assert sent["demo@us-west-2"] == 3

    result = HealthGate(fast).evaluate(now=now, sleep=lambda _: None)
    assert result.verdict == "pass", result.reason
    west = {
        (c.name, c.status) for c in result.rounds[0].checks if c.resource.endswith("(us-west-2)")
    }
    assert west == {
        ("rds-status", "pass"),
        ("rds-cpu", "pass"),
        ("rds-replica-lag", "pass"),  # not connections: an idle standby's replica has no client
        ("alarms", "pass"),
    }


@pytest.mark.usefixtures("prefect_client_env")
def test_after_regions_expand_cost_matches_the_plan_gates_see_it_and_failover_promotes(
    seeded: EnvironmentConfig, sandbox: str, tmp_path: Path
) -> None:
    east = AwsClients(AwsSettings(region="us-east-1", endpoint_url=sandbox))
    seed_hosted_zone(east, "demo")
    regions = {
        "secondary": "us-west-2",
        "hosted_zone": hosted_zone_name("demo"),
        "record_name": f"app.{hosted_zone_name('demo')}",
    }
    path = write_environment(tmp_path, "demo", sandbox, regions=regions)
    config = parse_environment(path)
    ctx = StepContext.for_environment(config)
    primary = discover(config)
    planned = monthly_cost_of_secondary(config, primary)[0]  # every part, as the steps plan
    for step_id in ordered(3):
        if step_id.startswith("regions.expand."):
            execute(STEPS[step_id](ctx), key="phase 3")

    report = json.loads(CliRunner().invoke(app, ["cost", str(path), "--json"]).stdout)
    west = {r["component"]: r["monthly"] for r in report["rows"] if r["region"] == "us-west-2"}
    for part, component in (("database", "Database"), ("cache", "Cache")):
        assert west[component] == pytest.approx(
            monthly_cost_of_secondary(config, primary, [part])[0], abs=CENT
        ), part
    assert sum(west.values()) == pytest.approx(planned, abs=CENT)  # the plan was honest

    now = datetime.now(UTC)
    WorkloadSimulator(lambda: [config], backfill_minutes=10).tick(now)
    gate = HealthGate(config).evaluate(now=now, sleep=lambda _: None)
    assert gate.verdict == "pass", gate.reason
    checked = {c.name for c in gate.rounds[0].checks if c.resource.endswith("(us-west-2)")}
    assert {"alb-5xx-ratio", "healthy-hosts", "ecs-running", "rds-replica-lag"} <= checked
    assert {"redis-status", "redis-memory", "alarms"} <= checked

    result = cli(str(path), "--to", "us-west-2", "--auto-approve")
    assert result.exit_code == 0, result.output
    assert f"Route 53 PRIMARY record {regions['record_name']}" in result.stdout
    [made] = [
        db
        for db in west_clients(sandbox).rds.describe_db_instances()["DBInstances"]
        if db["DBInstanceIdentifier"] in result.stdout
    ]
    assert "ReadReplicaSourceDBInstanceIdentifier" not in made
    assert made["DBInstanceStatus"] == "available"
    # Handed over: a rollback of regions.expand.database no longer finds it to delete.
    undo = STEPS["regions.expand.database"](StepContext.for_environment(config))
    with contextlib.suppress(PhasegateError):  # its groups may refuse: the database uses them
        undo.rollback(Ledger(config).chain(3, undo.id)[-1])
    rds = west_clients(sandbox).rds
    assert rds.describe_db_instances(DBInstanceIdentifier=made["DBInstanceIdentifier"])


@pytest.mark.usefixtures("prefect_client_env")
def test_a_failover_that_died_after_its_intent_resumes(standby: Path, sandbox: str) -> None:
    config = parse_environment(standby)
    plan = plan_failover(config, "us-west-2")
    now = datetime.now(UTC)
    Ledger(config).append(  # what a run killed between its intent and the promotion leaves
        Record(
            environment="demo", phase=FAILOVER_PHASE, step=FAILOVER_STEP, key="failover",
            outcome="intent", change=plan.change, before=plan.change.before,
            after={"region": "us-west-2", "replica_arn": plan.replica_arn},
            started_at=now, finished_at=now,
        )
    )  # fmt: skip
    assert plan_failover(config, "us-west-2").state == "promoting"

    result = cli(str(standby), "--to", "us-west-2", "--auto-approve")

    assert result.exit_code == 0, result.output
    assert "ReadReplicaSourceDBInstanceIdentifier" not in replica(sandbox)
    chain = Ledger(config).chain(FAILOVER_PHASE, FAILOVER_STEP)
    assert [r.outcome for r in chain] == ["intent", "intent", "applied"]
    assert plan_failover(config, "us-west-2").state == "promoted"
