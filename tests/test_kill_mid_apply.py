"""A step killed (SIGKILL) mid-apply, at the point a sandbox hold fault places it, never a
sleep: the next run resumes it from its journaled intent, or a rollback restores the
before-state of what happened; either way nothing is duplicated."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from phasegate.aws import AwsClients
from phasegate.config import EnvironmentConfig
from phasegate.inventory import discover
from phasegate.ledger import Ledger
from phasegate.lifecycle import execute, undo
from phasegate.steps import StepContext
from tasks.registry import STEPS

HERE = Path(__file__).parent

# (step, the action the kill lands on, the action that must already have happened)
KILL_POINTS = [
    ("nat.remove", "DeleteNatGateway", "DeleteRoute"),
    ("compute.graviton", "UpdateService", "RegisterTaskDefinition"),
    ("database.resize", "ModifyDBInstance", "CreateDBSnapshot"),
]


def actions(sandbox: str) -> list[str]:
    return [c["action"] for c in requests.get(f"{sandbox}/_phasegate/calls", timeout=10).json()]


def kill_at(config: EnvironmentConfig, sandbox: str, step_id: str, action: str) -> None:
    """Run `step_id` in a process, hold its `action` at the sandbox, SIGKILL it there."""
    requests.delete(f"{sandbox}/_phasegate/calls", timeout=10).raise_for_status()
    requests.post(
        f"{sandbox}/_phasegate/faults", json={"action": action, "hold": 60, "times": 1}, timeout=10
    ).raise_for_status()
    process = subprocess.Popen(
        [sys.executable, str(HERE / "run_one_step.py"), str(config.source), step_id],
        env={**os.environ, "PYTHONPATH": str(HERE.parent)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while action not in actions(sandbox):
            assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, f"{action} never reached the sandbox"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        requests.delete(f"{sandbox}/_phasegate/faults", timeout=10).raise_for_status()


def footprint(config: EnvironmentConfig) -> dict[str, Any]:
    """Everything a duplicate would show up in: NAT gateways, EIPs, routes, task definition
    revisions, snapshots, sizes."""
    clients = AwsClients(config.aws)
    ec2 = clients.ec2
    nats = sorted(
        (n["NatGatewayId"], n["State"])
        for n in ec2.describe_nat_gateways()["NatGateways"]
        if n["State"] not in ("deleted", "failed")
    )
    routes = sorted(
        (
            t["RouteTableId"],
            str(r.get("DestinationCidrBlock") or r.get("DestinationPrefixListId")),
            str(r.get("NatGatewayId") or r.get("GatewayId") or ""),
        )
        for t in ec2.describe_route_tables()["RouteTables"]
        for r in t["Routes"]
    )
    inventory = discover(config)
    families = clients.ecs.list_task_definitions(status="ACTIVE")["taskDefinitionArns"]
    snapshots = clients.rds.describe_db_snapshots(SnapshotType="manual")["DBSnapshots"]
    return {
        "nat_gateways": nats,
        "elastic_ips": sorted(a["AllocationId"] for a in ec2.describe_addresses()["Addresses"]),
        "routes": routes,
        "task_definitions": sorted(families),
        "service_task_definition": [s.task_definition for s in inventory.services],
        "snapshots": sorted(s["DBSnapshotIdentifier"] for s in snapshots),
        "db_class": [d.instance_class for d in inventory.databases],
    }


@pytest.mark.parametrize(("step_id", "action", "done"), KILL_POINTS)
def test_killed_step_is_resumed_by_the_next_run_without_duplicates(
    seeded: EnvironmentConfig, sandbox: str, step_id: str, action: str, done: str
) -> None:
    kill_at(seeded, sandbox, step_id, action)
    assert done in actions(sandbox)
    ledger = Ledger(seeded)
    intent = ledger.open_intent(1, step_id)
    assert intent is not None, "the change was journaled before it was applied"

    record = execute(STEPS[step_id](StepContext.for_environment(seeded)), "resumed")
    assert record.outcome == "applied"
    assert record.before == intent.before  # the true before-state, not the half-changed one
    first = footprint(seeded)
    if step_id == "nat.remove":
        assert first["nat_gateways"] == [] and first["elastic_ips"] == []
        assert not [r for r in first["routes"] if r[2] and r[2].startswith("nat-")]
    if step_id == "compute.graviton":
        assert len(first["task_definitions"]) == 2  # the x86 one and one ARM64 twin
    if step_id == "database.resize":
        assert first["db_class"] == ["db.t4g.micro"] and len(first["snapshots"]) == 1
    # A further run changes nothing: nothing was left half-done.
    again = execute(STEPS[step_id](StepContext.for_environment(seeded)), "again")
    assert again.outcome == "unchanged"
    assert footprint(seeded) == first


@pytest.mark.parametrize(("step_id", "action", "done"), KILL_POINTS)
def test_killed_step_is_rolled_back_from_its_journal(
    seeded: EnvironmentConfig, sandbox: str, step_id: str, action: str, done: str
) -> None:
    before = footprint(seeded)
    kill_at(seeded, sandbox, step_id, action)
    assert done in actions(sandbox)

    step = STEPS[step_id](StepContext.for_environment(seeded))
    assert undo(step) == "rolled back"
    after = footprint(seeded)
    if step_id == "database.resize":
        # The snapshot taken before the kill is kept (the data as it was), nothing else.
        assert len(after.pop("snapshots")) == 1 and before.pop("snapshots") == []
    assert after == before  # same NAT gateways, EIPs and routes; x86 revision; db.t3.micro
    head = Ledger(seeded).head(1, step_id)
    assert head is not None and head.outcome == "rolled_back" and "half-applied" in head.detail
    assert undo(step) == "nothing to undo"
