"""Sandbox faults as a health gate sees them: real HTTP against the sandbox, real gates.

The workload simulator ticks here directly, at a pinned minute, so a test asserts what each
tick sent (datapoints, AWS calls), never how long it took. The faults file lives under the
test's own PHASEGATE_HOME, and phasegate.gates reads CloudWatch through GetMetricData exactly
as it would read AWS. Nothing in the gate knows about faults: it only sees what the sandbox
published.
"""

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import yaml
from click.testing import Result
from conftest import write_environment
from typer.testing import CliRunner

from phasegate.aws import AwsClients
from phasegate.cli import app
from phasegate.config import EnvironmentConfig, Gates
from phasegate.gates import GateResult, HealthGate, load_balancer_dimension
from phasegate.home import generated_environments_dir
from phasegate.inventory import discover
from phasegate.ledger import Ledger
from phasegate.lifecycle import execute, undo
from phasegate.sandbox.server import faults_path
from phasegate.sandbox.simulator import WorkloadSimulator, read_fault_specs, set_fault
from phasegate.steps import StepContext
from tasks.registry import STEPS

runner = CliRunner()


@pytest.fixture(autouse=True)
def _own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test has its own PHASEGATE_HOME, so its own faults file."""
    monkeypatch.setenv("PHASEGATE_HOME", str(tmp_path / "home"))


@pytest.fixture
def simulator(seeded: EnvironmentConfig) -> Iterator[WorkloadSimulator]:
    """The simulator of the seeded environment, stopped after the test whatever happened."""
    sim = WorkloadSimulator(lambda: [seeded], backfill_minutes=5, tick_seconds=0.2)
    yield sim
    sim.stop()


def fast(config: EnvironmentConfig) -> EnvironmentConfig:
    gates = Gates(interval_seconds=0.05, count=2, lookback_minutes=5)
    return config.model_copy(update={"gates": gates})


def gate(config: EnvironmentConfig) -> GateResult:
    return HealthGate(fast(config)).evaluate()


def statuses(result: GateResult, check: str) -> set[str]:
    return {c.status for r in result.rounds for c in r.checks if c.name == check}


def values(result: GateResult, check: str) -> list[float]:
    return [float(c.value or 0) for r in result.rounds for c in r.checks if c.name == check]


def fault_cli(*args: str) -> Result:
    return runner.invoke(app, ["sandbox", "fault", *args])


def sandbox_calls(sandbox: str) -> list[dict[str, str]]:
    """Every AWS call the sandbox answered since its call log was last cleared."""
    return requests.get(f"{sandbox}/_phasegate/calls", timeout=10).json()


# -- what a gate sees -----------------------------------------------------------------------


def test_healthy_environment_passes(seeded: EnvironmentConfig, simulator: WorkloadSimulator):
    assert simulator.tick()["demo"] > 0
    result = gate(seeded)
    assert result.passed, result.reason
    assert statuses(result, "alb-5xx-ratio") == {"pass"}


@pytest.mark.parametrize(
    ("kind", "check", "far_from_threshold"),
    [
        ("5xx", "alb-5xx-ratio", lambda v: v > 0.15),  # the whole window, not 1 minute in 5
        ("latency", "alb-response-time", lambda v: v > 2.0),  # ditto: the Average is ~2.5 s
        ("unhealthy", "healthy-hosts", lambda v: v == 0),
    ],
)
def test_fault_set_mid_minute_shows_on_the_next_tick(
    seeded: EnvironmentConfig, simulator: WorkloadSimulator, kind: str, check: str,
    far_from_threshold: Callable[[float], bool],
) -> None:  # fmt: skip
    now = datetime.now(UTC)  # both ticks at it: the same minute
    simulator.tick(now)  # the last 5 minutes, healthy, this one included
    assert gate(seeded).passed

    result = fault_cli(str(seeded.source), "--kind", kind)
    assert result.exit_code == 0, result.output
    # Same minute: nothing new is due, so all the tick publishes is the fault catching up.
    assert simulator.tick(now)["demo"] > 0
    assert simulator.tick(now)["demo"] == 0  # once only

    result = gate(seeded)
    assert not result.passed
    assert statuses(result, check) == {"fail"}, result.reason
    assert f"{check} on " in result.reason
    assert all(far_from_threshold(v) for v in values(result, check)), values(result, check)


def test_nodata_on_a_silent_environment_is_inconclusive(
    seeded: EnvironmentConfig, simulator: WorkloadSimulator
) -> None:
    set_fault("demo", "nodata")
    assert simulator.tick() == {"demo": 0}

    result = gate(seeded)
    assert not result.passed
    assert statuses(result, "alb-5xx-ratio") == {"inconclusive"}
    assert len(result.rounds) == 2  # one inconclusive is tolerated (limit 1), two are not
    assert "above inconclusive_limit 1" in result.reason


def test_fault_after_a_step_waits_for_its_checkpoint(
    seeded: EnvironmentConfig, simulator: WorkloadSimulator
) -> None:
    result = fault_cli(str(seeded.source), "--kind", "5xx", "--after", "compute.graviton")
    assert result.exit_code == 0, result.output
    now = datetime.now(UTC)  # every tick at it: the same minute, so nothing new falls due
    assert simulator.tick(now)["demo"] > 0  # the backfill, healthy: the step has not run
    assert simulator.tick(now) == {"demo": 0}  # no fault in force: nothing to catch up on
    assert gate(seeded).passed

    # Run the real step: its applied Record in the ledger is the checkpoint.
    step = STEPS["compute.graviton"](StepContext.for_environment(seeded))
    ledger = Ledger(seeded)
    assert ledger.checkpoint(step.phase, step.id) is None
    record = execute(step, "t", ledger)
    assert ledger.checkpoint(step.phase, step.id) == record

    assert simulator.tick(now)["demo"] > 0  # the checkpoint is there: the fault catches up
    assert simulator.tick(now) == {"demo": 0}  # once only
    result = gate(seeded)
    assert not result.passed
    assert statuses(result, "alb-5xx-ratio") == {"fail"}, result.reason
    assert "alb-5xx-ratio on " in result.reason


def test_rolling_the_step_back_ends_the_fault(
    seeded: EnvironmentConfig, simulator: WorkloadSimulator
) -> None:
    set_fault("demo", "5xx", after="compute.graviton")
    step = STEPS["compute.graviton"](StepContext.for_environment(seeded))
    execute(step, "t")
    now = datetime.now(UTC)
    simulator.tick(now)
    assert not gate(seeded).passed

    assert undo(step) == "rolled back"  # appended to the ledger: no checkpoint any more
    later = now + timedelta(minutes=1)
    simulator.tick(later)  # the next minute is published healthy

    lb = discover(seeded).load_balancers[0]
    [errors] = AwsClients(seeded.aws).cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "e",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/ApplicationELB",
                        "MetricName": "HTTPCode_Target_5XX_Count",
                        "Dimensions": [
                            {"Name": "LoadBalancer", "Value": load_balancer_dimension(lb.arn)}
                        ],
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            }
        ],
        StartTime=later.replace(second=0),
        EndTime=later.replace(second=0) + timedelta(minutes=1),
    )["MetricDataResults"]
    assert len(errors["Values"]) == 1 and errors["Values"][0] <= 2


def test_steady_tick_is_cheap(
    seeded: EnvironmentConfig, simulator: WorkloadSimulator, sandbox: str
) -> None:
    """Ticking every half second must cost next to nothing when no minute is due: no AWS
    call at all (the sandbox logs every call it gets), whatever the machine's speed."""
    set_fault("demo", "latency", after="compute.graviton")  # a checkpoint to look for
    now = datetime.now(UTC)
    requests.delete(f"{sandbox}/_phasegate/calls", timeout=10).raise_for_status()
    assert simulator.tick(now)["demo"] > 0
    assert "PutMetricData" in {c["action"] for c in sandbox_calls(sandbox)}  # the log works
    requests.delete(f"{sandbox}/_phasegate/calls", timeout=10).raise_for_status()
    for _ in range(20):
        assert simulator.tick(now) == {"demo": 0}
    assert sandbox_calls(sandbox) == []


# -- the command line -----------------------------------------------------------------------


def test_cli_sets_and_clears_a_fault(tmp_path: Path) -> None:
    path = write_environment(tmp_path, "demo", "http://127.0.0.1:1")

    result = fault_cli(str(path), "--kind", "5xx", "--after", "compute.graviton")
    assert result.exit_code == 0, result.output
    assert "compute.graviton" in result.stdout
    assert json.loads(faults_path().read_text()) == {
        "demo": {"kind": "5xx", "after": "compute.graviton"}
    }

    by_name = generated_environments_dir() / "demo-2.yaml"  # a sandbox-written file, by name
    by_name.write_text(
        yaml.safe_dump(
            {
                "name": "demo-2",
                "tier": "dev",
                "aws": {"region": "us-east-1", "endpoint_url": "http://127.0.0.1:1"},
                "discovery": {"tags": {"Environment": "demo-2"}},
            }
        )
    )
    assert fault_cli("demo-2", "--kind", "latency").exit_code == 0
    assert json.loads(faults_path().read_text()) == {
        "demo": {"kind": "5xx", "after": "compute.graviton"},
        "demo-2": "latency",
    }

    cleared = fault_cli(str(path), "--clear")
    assert cleared.exit_code == 0 and "cleared the 5xx fault of demo" in cleared.stdout
    assert {env: f.kind for env, f in read_fault_specs().items()} == {"demo-2": "latency"}
    again = fault_cli(str(path), "--clear")
    assert again.exit_code == 0 and "demo had no fault" in again.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "teapot"], "unknown fault kind 'teapot'"),
        (["--kind", "5xx", "--after", "nat.teleport"], "unknown step 'nat.teleport'"),
        ([], "give --kind"),
        (["--clear", "--kind", "5xx"], "--clear removes the whole fault"),
    ],
)
def test_cli_bad_input_is_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    path = write_environment(tmp_path, "demo", "http://127.0.0.1:1")
    result = fault_cli(str(path), *args)
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())
    assert not faults_path().exists()


def test_cli_unknown_or_real_environment_is_exit_2(tmp_path: Path) -> None:
    unknown = fault_cli("no-such-env", "--kind", "5xx")
    assert unknown.exit_code == 2
    assert "'no-such-env' not found" in " ".join(unknown.stderr.split())

    real = tmp_path / "acme-prod.yaml"
    real.write_text(
        yaml.safe_dump(
            {
                "name": "acme-prod",
                "tier": "prod",
                "aws": {"region": "us-east-1"},
                "discovery": {"tags": {"Environment": "acme-prod"}},
            }
        )
    )
    result = fault_cli(str(real), "--kind", "5xx")
    assert result.exit_code == 2
    assert "acme-prod is not a sandbox environment" in " ".join(result.stderr.split())
    assert not faults_path().exists()
