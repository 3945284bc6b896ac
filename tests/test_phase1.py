"""Phase 1 end to end: real Prefect flows against the sandbox, resumed, re-run and rolled back."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import write_environment
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from typer.testing import CliRunner

from flows.phase1 import phase1
from flows.rollback import rollback_phase
from phasegate.aws import AwsClients
from phasegate.checkpoints import checkpoint_storage
from phasegate.cli import app
from phasegate.config import AwsSettings, EnvironmentConfig, parse_environment
from phasegate.cost import load_price_table, price_inventory
from phasegate.errors import PhaseFailed
from phasegate.inventory import Inventory, discover
from phasegate.sandbox.app import is_mutating
from phasegate.sandbox.seed import seed_environment

pytestmark = pytest.mark.usefixtures("prefect_client_env")


def mutating_calls(sandbox: str) -> list[str]:
    calls = requests.get(f"{sandbox}/_phasegate/calls", timeout=10).json()
    return [f"{c['service']}:{c['action']}" for c in calls if is_mutating(c["action"])]


def clear_calls(sandbox: str) -> None:
    requests.delete(f"{sandbox}/_phasegate/calls", timeout=10).raise_for_status()


@pytest.fixture(params=["ecs-fargate-arm64", "ec2-asg-graviton"])
def environment(request: pytest.FixtureRequest, sandbox: str, tmp_path: Path) -> EnvironmentConfig:
    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=sandbox))
    seed_environment(clients, "demo", 1)
    path = write_environment(tmp_path, "demo", sandbox, targets={"compute": request.param})
    return parse_environment(path)


def run(config: EnvironmentConfig) -> list[Any]:
    with checkpoint_storage(config):
        return phase1(str(config.source))


def rollback(config: EnvironmentConfig) -> dict[str, str]:
    with checkpoint_storage(config):
        return rollback_phase(str(config.source), 1)


def shape(inv: Inventory) -> dict[str, Any]:
    """The inventory without the ids a rollback must change (new NAT gateways and EIPs)."""
    data = inv.model_dump()
    nat_ids = {n.id for n in inv.nat_gateways}
    for vpc in data["vpcs"]:
        for nat in vpc["nat_gateways"]:
            nat.update(id="nat", allocation_ids=["eip"], public_ips=["ip"])
        for table in vpc["route_tables"]:
            for route in table["routes"]:
                if route["target_id"] in nat_ids:
                    route["target_id"] = "nat"
        vpc["nat_gateways"].sort(key=lambda n: n["subnet_id"])
    for svc in data["services"]:
        svc["task_definition"] = svc["task_definition"].rsplit(":", 1)[0]
    return data


def assert_phase1_end_state(config: EnvironmentConfig) -> None:
    inv = discover(config)
    clients = AwsClients(config.aws)
    assert inv.nat_gateways == []
    [vpc] = inv.vpcs
    assert all(r.target_type != "nat" for t in vpc.route_tables for r in t.routes), (
        "a 0.0.0.0/0 route still points at a NAT gateway"
    )
    assert any(e.endswith(".s3") for e in vpc.vpc_endpoints)
    assert clients.ec2.describe_addresses()["Addresses"] == []
    public = {s.id for s in vpc.subnets if s.public}
    if config.targets.compute == "ecs-fargate-arm64":
        [svc] = inv.services
        assert svc.architecture == "ARM64" and svc.assign_public_ip
        assert set(svc.subnets) <= public and svc.running == svc.desired == 2
    else:
        [asg] = inv.autoscaling_groups
        assert asg.instance_types == ["t4g.medium"] and asg.in_service == asg.desired >= 1
        assert set(asg.subnets) <= public
        assert all(svc.desired == 0 for svc in inv.services)
    [db] = inv.databases
    assert db.instance_class == "db.t4g.micro"
    [cache] = inv.caches
    assert cache.node_type == "cache.t4g.micro"
    snapshots = clients.rds.describe_db_snapshots(
        DBInstanceIdentifier=db.identifier, SnapshotType="manual"
    )
    assert len(snapshots["DBSnapshots"]) == 1


def test_phase1_migrates_resumes_and_rolls_back(
    environment: EnvironmentConfig, sandbox: str
) -> None:
    prices = load_price_table("us-east-1")
    before = discover(environment)
    cost_before = price_inventory(before, environment, prices)

    records = run(environment)
    assert [r.step for r in records] == [
        "nat.assess", "nat.remove", "compute.graviton", "database.resize", "cache.resize"
    ]  # fmt: skip
    assert_phase1_end_state(environment)
    cost_after = price_inventory(discover(environment), environment, prices)
    assert cost_after.row("NAT Gateway") == 0
    if environment.targets.compute == "ec2-asg-graviton":
        assert 80 <= cost_after.total <= 125, "the seed's EC2 Auto Scaling range"
    else:
        assert cost_after.total < cost_before.total - 80

    clear_calls(sandbox)
    again = run(environment)
    assert mutating_calls(sandbox) == []
    assert [r.key for r in again] == [r.key for r in records]

    outcome = rollback(environment)
    assert outcome["nat.remove"] == "rolled back"
    assert shape(discover(environment)) == shape(before)


def test_plan_makes_no_mutating_call(environment: EnvironmentConfig, sandbox: str) -> None:
    from flows.plan import plan_phases

    clear_calls(sandbox)
    plans = plan_phases(str(environment.source), [1])[1]
    assert mutating_calls(sandbox) == []
    changes = dict(plans)
    assert changes["nat.remove"] is not None and changes["nat.remove"].monthly_cost_delta < -60
    assert changes["database.resize"] is not None


def test_drift_is_noticed_and_planned_again(sandbox: str, tmp_path: Path) -> None:
    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=sandbox))
    seed_environment(clients, "demo", 1)
    config = parse_environment(write_environment(tmp_path, "demo", sandbox))
    first = {r.step: r for r in run(config)}
    clients.rds.modify_db_instance(
        DBInstanceIdentifier="demo-db", DBInstanceClass="db.t3.micro", ApplyImmediately=True
    )
    second = {r.step: r for r in run(config)}
    assert second["database.resize"].key != first["database.resize"].key
    assert second["database.resize"].outcome == "applied"
    assert second["cache.resize"].key == first["cache.resize"].key
    assert discover(config).databases[0].instance_class == "db.t4g.micro"


def inject(sandbox: str, **fault: Any) -> None:
    requests.post(f"{sandbox}/_phasegate/faults", json=fault, timeout=10).raise_for_status()


def seeded_config(sandbox: str, tmp_path: Path, **overrides: Any) -> EnvironmentConfig:
    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=sandbox))
    seed_environment(clients, "demo", 1)
    return parse_environment(write_environment(tmp_path, "demo", sandbox, **overrides))


def test_throttling_on_every_mutating_call_is_survived(sandbox: str, tmp_path: Path) -> None:
    config = seeded_config(sandbox, tmp_path)
    inject(sandbox, action="*", code="Throttling", status=400, times=2)
    run(config)
    assert_phase1_end_state(config)
    faults = requests.get(f"{sandbox}/_phasegate/faults", timeout=10).json()
    throttled = faults[0]["failed"]
    assert {"DeleteNatGateway", "ModifyDBInstance", "ModifyReplicationGroup"} <= set(throttled)
    assert set(throttled.values()) == {2}


def test_access_denied_stops_the_phase_and_rolls_back(sandbox: str, tmp_path: Path) -> None:
    config = seeded_config(sandbox, tmp_path)
    before = discover(config)
    inject(sandbox, action="ModifyReplicationGroup", code="AccessDenied", status=403)
    with pytest.raises(PhaseFailed) as failed:
        run(config)
    message = str(failed.value)
    assert "cache.resize" in message and "demo-redis" in message and "AccessDenied" in message
    assert "rolled back" in message
    assert shape(discover(config)) == shape(before)


def test_access_denied_with_stop_keeps_progress_and_a_rerun_resumes(
    sandbox: str, tmp_path: Path
) -> None:
    """A failure mid-apply (NAT deletion forbidden after tasks and routes moved) keeps the
    before-state: the re-run resumes the journaled change, and rollback restores the seed."""
    config = seeded_config(sandbox, tmp_path, phases={"on_step_failure": "stop"})
    before = discover(config)
    inject(sandbox, action="DeleteNatGateway", code="UnauthorizedOperation", status=403)
    with pytest.raises(PhaseFailed) as failed:
        run(config)
    assert "nat.remove" in str(failed.value) and "stopped" in str(failed.value)
    midway = discover(config)
    assert len(midway.nat_gateways) == 2 and midway.services[0].assign_public_ip

    requests.delete(f"{sandbox}/_phasegate/faults", timeout=10).raise_for_status()
    run(config)
    assert_phase1_end_state(config)
    rollback(config)
    assert shape(discover(config)) == shape(before)


def _run_and_kill_after(config: EnvironmentConfig, step: str) -> None:
    """Run phase 1 in a child process and SIGKILL it as soon as `step` is verified."""
    env = {**os.environ, "PHASEGATE_LOG_LEVEL": "INFO"}
    child = subprocess.Popen(
        [sys.executable, "-m", "phasegate.cli", "run", str(config.source), "--phase", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True,
        start_new_session=True,
    )  # fmt: skip
    killed = False
    said: list[str] = []
    try:
        assert child.stderr is not None
        for line in child.stderr:
            said = [*said[-19:], line.rstrip()]
            try:
                event = json.loads(line[line.index("{") :])
            except ValueError:
                continue
            if event.get("event") == "step.verified" and event.get("step") == step:
                os.killpg(child.pid, signal.SIGKILL)
                killed = True
                break
    finally:
        if child.poll() is None and not killed:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    tail = "\n".join(said)
    assert killed, f"the child finished without verifying {step}; its last lines:\n{tail}"


@pytest.mark.parametrize(
    ("boundary", "compute"),
    [
        ("nat.assess", "ecs-fargate-arm64"),
        ("nat.remove", "ecs-fargate-arm64"),
        ("compute.graviton", "ecs-fargate-arm64"),
        ("database.resize", "ecs-fargate-arm64"),
        ("compute.graviton", "ec2-asg-graviton"),
    ],
)
def test_killed_at_each_step_boundary_resumes_without_duplicates(
    boundary: str, compute: str, sandbox: str, tmp_path: Path
) -> None:
    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=sandbox))
    config = seeded_config(sandbox, tmp_path, targets={"compute": compute})
    seeded_shape = discover(config)
    _run_and_kill_after(config, boundary)
    unlocked = CliRunner().invoke(app, ["unlock", str(config.source)])
    assert unlocked.exit_code == 0 and "flow run" in unlocked.output, unlocked.output

    run(config)
    assert_phase1_end_state(config)
    family = clients.ecs.list_task_definitions(familyPrefix="demo-api")["taskDefinitionArns"]
    assert len(family) == (2 if compute == "ecs-fargate-arm64" else 1), family
    groups = clients.autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
    assert len(groups) == (1 if compute == "ec2-asg-graviton" else 0)
    assert len(clients.elasticache.describe_snapshots()["Snapshots"]) == 1
    rollback(config)
    assert shape(discover(config)) == shape(seeded_shape)


def test_step_logs_reach_the_prefect_run_logs(sandbox: str, tmp_path: Path) -> None:
    """Each verb's structured line, with environment, phase and step bound, is in the run's logs."""
    config = seeded_config(sandbox, tmp_path)
    with checkpoint_storage(config):
        state = phase1(str(config.source), return_state=True)
    flow_run_id = state.state_details.flow_run_id
    deadline = time.monotonic() + 20
    while True:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )
        lines = [json.loads(e.message) for e in logs if e.message.startswith("{")]
        verified = {line["step"] for line in lines if line.get("event") == "step.verified"}
        if len(verified) == 5 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert verified == {"nat.assess", "nat.remove", "compute.graviton", "database.resize",
                        "cache.resize"}  # fmt: skip
    nat = next(line for line in lines if line.get("event") == "step.applied"
               and line["step"] == "nat.remove")  # fmt: skip
    assert (nat["environment"], nat["phase"]) == ("demo", 1)
    assert any(line.get("resource") for line in lines), "resource-level lines are bound too"
