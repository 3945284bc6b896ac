"""The migration flow: approvals, health gates, rollback on a failed gate, one run per env."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import write_environment
from flowruns import FlowThread, stop_all
from prefect.flow_runs import resume_flow_run
from typer.testing import CliRunner

from flows.migration import migration
from phasegate.aws import AwsClients
from phasegate.checkpoints import checkpoint_storage
from phasegate.cli import app
from phasegate.config import AwsSettings, EnvironmentConfig, parse_environment
from phasegate.inventory import Inventory, discover
from phasegate.ledger import Ledger
from phasegate.report import MigrationFailed, MigrationReport
from phasegate.sandbox.seed import seed_environment
from phasegate.sandbox.simulator import WorkloadSimulator, set_fault
from tasks.approvals import resume_with
from tasks.locks import EnvironmentBusy
from tasks.registry import ordered

pytestmark = pytest.mark.usefixtures("prefect_client_env")

FAST_GATE = {"interval_seconds": 0.2, "count": 2, "lookback_minutes": 5}


def shape(inv: Inventory) -> dict[str, Any]:
    """The inventory without ids a rollback must change (new NAT gateways and EIPs)."""
    from test_phase1 import shape as phase1_shape

    return phase1_shape(inv)


@pytest.fixture
def make_env(sandbox: str, tmp_path: Path):
    """Seed an environment and return its config; extra keys override the config."""

    def make(name: str = "demo", **overrides: Any) -> EnvironmentConfig:
        clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=sandbox))
        seed_environment(clients, name, 1)
        overrides.setdefault("gates", FAST_GATE)
        return parse_environment(write_environment(tmp_path, name, sandbox, **overrides))

    return make


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[list[EnvironmentConfig]]:
    """A workload simulator publishing healthy metrics for the configs appended to the list."""
    configs: list[EnvironmentConfig] = []
    sim = WorkloadSimulator(lambda: configs, tick_seconds=0.3, faults_file=tmp_path / "faults.json")
    sim.start()
    yield configs
    sim.stop()


def migrate(config: EnvironmentConfig, **kwargs: Any) -> MigrationReport:
    with checkpoint_storage(config):
        return migration(str(config.source), **kwargs)


@pytest.fixture
def paused_run() -> Iterator[Callable[[EnvironmentConfig], FlowThread]]:
    """Start phase 1 of a migration in a thread; return it once it pauses for an answer.

    The run is found by its FlowThread's own tag, never by name. Whatever the test does, every
    run it started is rejected whenever it pauses and its thread joined after the test.
    """
    started: list[FlowThread] = []

    def start(config: EnvironmentConfig) -> FlowThread:
        started.append(FlowThread(lambda: migrate(config, phases=[1]), label=config.name))
        started[-1].wait_paused(timeout=120)
        return started[-1]

    yield start
    stop_all(started, lambda run_id: resume_with(run_id, False, "test-teardown"), timeout=180)


def test_healthy_migration_passes_its_gate_and_nat_falls_to_zero(make_env, simulator) -> None:
    config = make_env()
    simulator.append(config)
    report = migrate(config, phases=[1, 2])
    one, two = report.phases
    assert (one.status, one.gate) == ("completed", "pass")
    assert one.cost_before["NAT Gateway"] > 80 and one.cost_after["NAT Gateway"] == 0
    assert one.cost_after["Total"] < one.cost_before["Total"]
    assert one.approver == "phasegate"  # dev auto-approves
    assert (two.status, two.gate) == ("completed", "pass")  # phase 2's own alarms included


def test_5xx_after_graviton_fails_the_gate_and_the_phase_is_rolled_back(
    make_env, simulator, tmp_path: Path
) -> None:
    config = make_env("faulty")
    before = discover(config)
    set_fault("faulty", "5xx", tmp_path / "faults.json", after="compute.graviton")
    simulator.append(config)
    with pytest.raises(MigrationFailed) as failed:
        migrate(config, phases=[1])
    [one] = failed.value.report.phases
    assert (one.status, one.gate) == ("rolled back", "fail")
    assert "alb-5xx-ratio" in one.gate_reason
    assert one.cost_after == one.cost_before
    assert shape(discover(config)) == shape(before)


def test_nodata_is_inconclusive_and_fails_the_gate_then_rolls_back(make_env) -> None:
    config = make_env(gates={**FAST_GATE, "count": 3, "inconclusive_limit": 1})
    before = discover(config)
    with pytest.raises(MigrationFailed) as failed:
        migrate(config, phases=[1])
    [one] = failed.value.report.phases
    assert (one.status, one.gate) == ("rolled back", "fail")
    assert "inconclusive" in one.gate_reason
    assert shape(discover(config)) == shape(before)


def test_failed_gate_pauses_for_the_operator_who_rolls_it_back(make_env, paused_run) -> None:
    """gates.on_failure: pause — no metrics fail the gate, the run waits, a reject undoes it."""
    config = make_env("paused-gate", gates={**FAST_GATE, "on_failure": "pause"})
    before = discover(config)
    bg = paused_run(config)
    assert discover(config).nat_gateways == [], "the phase is applied while the operator decides"
    resume_flow_run(bg.run_id, run_input={"approved": False, "approver": "ops", "comment": "5xx"})
    bg.join(timeout=180)
    [one] = bg.error.report.phases
    assert (one.status, one.gate) == ("rolled back", "fail")
    assert "ops" in one.detail and "inconclusive" in one.detail
    assert shape(discover(config)) == shape(before)


def test_staging_waits_for_approval_and_continues_when_approved(
    make_env, simulator, paused_run
) -> None:
    config = make_env("stage-ok", tier="staging")
    simulator.append(config)
    bg = paused_run(config)
    assert len(discover(config).nat_gateways) == 2, "nothing may change before approval"
    result = CliRunner().invoke(
        app, ["approve", str(bg.run_id), "--approver", "ana", "--comment", "go"]
    )
    assert result.exit_code == 0, result.output
    bg.join(timeout=180)
    report = bg.result
    assert report.phases[0].status == "completed" and report.phases[0].approver == "ana"
    assert discover(config).nat_gateways == []
    ledger = Ledger(config)
    records = [ledger.checkpoint(1, step) for step in ordered(1)]
    assert {(r.approver, r.comment) for r in records if r} == {("ana", "go")}


def test_rejected_approval_changes_nothing(make_env, paused_run) -> None:
    config = make_env("stage-no", tier="staging")
    before = discover(config)
    bg = paused_run(config)
    resume_flow_run(
        bg.run_id, run_input={"approved": False, "approver": "bo", "comment": "not now"}
    )
    bg.join(timeout=120)
    assert isinstance(bg.error, MigrationFailed)
    assert bg.error.report.phases[0].status == "rejected"
    assert "bo" in str(bg.error) and "not now" in str(bg.error)
    assert discover(config) == before


def test_approval_timeout_stops_safely(make_env) -> None:
    config = make_env("stage-late", tier="staging", approvals={"timeout_seconds": 3})
    before = discover(config)
    with pytest.raises(MigrationFailed) as failed:
        migrate(config, phases=[1])
    assert failed.value.report.phases[0].status == "expired"
    assert discover(config) == before


def test_prod_auto_approve_is_refused_with_exit_2(make_env) -> None:
    config = make_env("acme-prod", tier="prod")
    result = CliRunner().invoke(app, ["run", str(config.source), "--phase", "1", "--auto-approve"])
    assert result.exit_code == 2
    assert "acme-prod" in result.output and "auto-approve" in result.output


def test_a_second_run_on_the_same_environment_is_refused(make_env, paused_run) -> None:
    config = make_env("busy", tier="staging")
    bg = paused_run(config)  # holds the environment while it waits
    with pytest.raises(EnvironmentBusy) as busy:
        migrate(config, phases=[1])
    assert str(bg.run_id) in str(busy.value)


@pytest.mark.timeout(600)  # waits out the killed run's lock lease (up to 150 s), then phase 1
def test_killed_holder_frees_the_lock_after_its_lease_and_the_run_resumes(
    make_env, simulator
) -> None:
    config = make_env("killed")
    simulator.append(config)
    child = subprocess.Popen(
        [sys.executable, "-m", "phasegate.cli", "run", str(config.source), "--phase", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env=os.environ.copy(),
    )  # fmt: skip
    assert child.stderr is not None
    for line in child.stderr:
        if '"step.verified"' in line and '"nat.remove"' in line:
            os.killpg(child.pid, signal.SIGKILL)
            break
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL

    with pytest.raises(EnvironmentBusy):
        migrate(config, phases=[1])
    deadline = time.monotonic() + 150
    while True:
        try:
            report = migrate(config, phases=[1])
            break
        except EnvironmentBusy:
            assert time.monotonic() < deadline, "the lease never ran out"
            time.sleep(5)
    assert report.phases[0].status == "completed"
    assert discover(config).nat_gateways == []
