"""The sandbox as a user runs it: a real detached process, real HTTP, files under PHASEGATE_HOME.

Every test that starts a sandbox stops it in a finalizer, and checks that the pid is gone.
"""

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import free_port
from typer.testing import CliRunner

from phasegate.aws import AwsClients
from phasegate.config import load_environment
from phasegate.errors import PhasegateError
from phasegate.home import generated_environments_dir
from phasegate.inventory import discover
from phasegate.ledger import Ledger
from phasegate.local_server import stop_server
from phasegate.sandbox import cli
from phasegate.sandbox.server import (
    SandboxState,
    add_environments,
    sandbox_status,
    start_sandbox,
    state_path,
    stop_sandbox,
)
from phasegate.steps import Record


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A PHASEGATE_HOME of the test's own; whatever sandbox the test started is stopped after."""
    monkeypatch.setenv("PHASEGATE_HOME", str(tmp_path / "home"))
    yield tmp_path / "home"
    stop_server()  # the local Prefect server `sandbox up` on the command line started
    result = stop_sandbox(timeout=5)
    if result.state is not None:
        assert not _pid_alive(result.state.pid)


def _one_words(text: str) -> str:
    return " ".join(text.split())


def test_up_seed_down(home: Path) -> None:
    port = free_port()
    state = start_sandbox(port=port, environments=2, tick_seconds=0.5)

    recorded = json.loads(state_path().read_text())
    assert recorded["pid"] == state.pid and _pid_alive(state.pid)
    assert recorded["port"] == port
    assert recorded["environments"] == ["demo", "demo-2"]
    assert datetime.fromisoformat(recorded["started_at"]) <= datetime.now(UTC)
    assert Path(recorded["log_file"]).parent == home / "sandbox"

    for index, name in enumerate(["demo", "demo-2"], start=1):
        config = load_environment(name)
        assert config.source == generated_environments_dir() / f"{name}.yaml"
        assert config.tier == "dev" and config.aws.region == "us-east-1"
        assert config.aws.endpoint_url == f"http://127.0.0.1:{port}"
        assert config.discovery.tags == {"Environment": name}
        # config/environments/demo.yaml opts in to phase 3's second region; demo-2 has no file
        assert config.regions.secondary == ("us-west-2" if name == "demo" else None)
        inventory = discover(config)
        assert len(inventory.nat_gateways) == 2
        assert inventory.vpcs[0].cidr == f"10.{index}.0.0/16"

    # The daemon's simulator backfills each environment's last hour within a tick or two.
    demo = load_environment("demo")
    alb = discover(demo).load_balancers[0].arn.split(":loadbalancer/", 1)[1]
    cloudwatch = AwsClients(demo.aws).cloudwatch
    now = datetime.now(UTC)
    query = {
        "Id": "requests",
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/ApplicationELB",
                "MetricName": "RequestCount",
                "Dimensions": [{"Name": "LoadBalancer", "Value": alb}],
            },
            "Period": 60,
            "Stat": "Sum",
        },
    }
    deadline = time.monotonic() + 20
    values: list[float] = []
    while time.monotonic() < deadline and len(values) < 60:
        time.sleep(0.5)
        values = cloudwatch.get_metric_data(
            MetricDataQueries=[query],
            StartTime=now - timedelta(minutes=65),
            EndTime=now + timedelta(minutes=2),
        )["MetricDataResults"][0]["Values"]
    assert len(values) >= 60 and all(950 <= v <= 1050 for v in values)

    with pytest.raises(PhasegateError) as refused:
        start_sandbox(port=port)
    assert f"already running (pid {state.pid}, port {port})" in str(refused.value)
    with pytest.raises(PhasegateError, match=f"pid {state.pid}"):
        start_sandbox(port=free_port())  # one sandbox at a time, whatever the port

    state, added = add_environments(1)
    assert added == ["demo-3"]
    assert json.loads(state_path().read_text())["environments"] == ["demo", "demo-2", "demo-3"]
    assert len(discover(load_environment("demo-3")).nat_gateways) == 2

    result = stop_sandbox()
    assert result.was_running and result.state == state
    assert not _pid_alive(state.pid)
    assert not state_path().exists()
    assert list(generated_environments_dir().glob("*.yaml")) == []

    again = stop_sandbox()
    assert again.state is None and not again.was_running


def test_a_new_sandbox_starts_with_an_empty_ledger(home: Path) -> None:
    """The first sandbox's checkpoints describe resources the second one does not have."""
    start_sandbox(port=free_port(), environments=1, tick_seconds=0.5)
    demo = load_environment("demo")
    Ledger(demo).append(
        Record(
            environment="demo",
            phase=1,
            step="nat.remove",
            outcome="applied",
            key="k",
            started_at=datetime.now(UTC),
            finished_at=datetime.now(UTC),
        )
    )
    assert Ledger(demo).head(1, "nat.remove") is not None
    stop_sandbox()

    start_sandbox(port=free_port(), environments=1, tick_seconds=0.5)
    assert Ledger(load_environment("demo")).head(1, "nat.remove") is None
    (retired,) = (home / "results-retired").iterdir()
    assert retired.name.startswith("demo-")
    assert list(retired.glob("1/nat.remove/ledger/*.json"))


def test_cli_up_status_down(home: Path) -> None:
    runner = CliRunner()
    port = free_port()

    up = runner.invoke(cli.app, ["up", "--port", str(port)])
    assert up.exit_code == 0, up.output
    assert f"http://127.0.0.1:{port}" in up.stdout and "demo" in up.stdout
    pid = json.loads(state_path().read_text())["pid"]

    status = runner.invoke(cli.app, ["status"])
    assert status.exit_code == 0 and "running" in status.stdout and f"pid {pid}" in status.stdout

    again = runner.invoke(cli.app, ["up", "--port", str(port)])
    assert again.exit_code == 1
    assert f"already running (pid {pid}, port {port})" in _one_words(again.stderr)

    down = runner.invoke(cli.app, ["down"])
    assert down.exit_code == 0 and "sandbox stopped" in down.stdout
    assert not _pid_alive(pid)

    down_again = runner.invoke(cli.app, ["down"])
    assert down_again.exit_code == 0 and "no sandbox is running" in down_again.stdout
    seed = runner.invoke(cli.app, ["seed"])
    assert seed.exit_code == 1 and "no sandbox is running" in seed.stderr
    bad = runner.invoke(cli.app, ["up", "--environments", "0"])
    assert bad.exit_code == 2


def test_busy_port_is_refused(home: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PhasegateError, match=f"port {port} .*already in use"):
            start_sandbox(port=port)
    assert not state_path().exists()


def test_stale_state_never_signals_a_stranger(home: Path) -> None:
    """A recorded pid that now belongs to another process is stale: cleaned up, not killed."""
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        stale = SandboxState(
            pid=stranger.pid,
            port=free_port(),
            started_at=datetime.now(UTC),
            environments=["demo"],
            log_file=str(home / "sandbox" / "sandbox.log"),
        )
        state_path().write_text(stale.model_dump_json())
        (generated_environments_dir() / "demo.yaml").write_text("name: demo\n")

        status = sandbox_status()
        assert status.state == stale and not status.alive and not status.running

        result = stop_sandbox()
        assert result.state == stale and not result.was_running
        assert stranger.poll() is None  # untouched
        assert not state_path().exists()
        assert not (generated_environments_dir() / "demo.yaml").exists()
    finally:
        stranger.kill()
        stranger.wait()
