"""Shared fixtures: a real moto server over HTTP on a free port, reset for every test.

Tests reach AWS only through this server, exactly as the product reaches real AWS: boto3
clients with an endpoint_url. Nothing is patched in-process.
"""

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from phasegate.aws import AwsClients
from phasegate.config import AwsSettings, EnvironmentConfig, parse_environment
from phasegate.local_server import stop_server
from phasegate.sandbox.app import SandboxServer
from phasegate.sandbox.seed import seed_environment


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_answering(url: str, process: subprocess.Popen, seconds: float, log: Path) -> None:
    """Return once GET `url` answers 2xx: a server a test started as a child process is up.
    The process exiting, or `seconds` passing, is an error naming its log."""
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).ok:
                return
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer (process {process.pid}); see {log}")
        time.sleep(0.2)


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Local state of the whole session goes to a temporary PHASEGATE_HOME."""
    home = tmp_path_factory.mktemp("phasegate-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("PHASEGATE_HOME", str(home))
    mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.delenv("AWS_PROFILE", raising=False)
    yield home
    stop_server()  # the local Prefect server a CLI command started, if one did
    mp.undo()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """One sandbox server (moto plus its gap-filling front) for the session; its base URL."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = SandboxServer(port=free_port()).start()
    yield server.url
    server.stop()


@pytest.fixture
def sandbox(moto_server: str) -> str:
    """A fresh, empty sandbox: the session's moto server after a reset."""
    requests.post(f"{moto_server}/moto-api/reset", timeout=10).raise_for_status()
    requests.delete(f"{moto_server}/_phasegate/calls", timeout=10).raise_for_status()
    requests.delete(f"{moto_server}/_phasegate/faults", timeout=10).raise_for_status()
    return moto_server


def write_environment(directory: Path, name: str, endpoint: str, **overrides: object) -> Path:
    """Write a valid environment file for `name` in the sandbox; return its path."""
    data: dict[str, object] = {
        "name": name,
        "tier": "dev",
        "aws": {"region": "us-east-1", "endpoint_url": endpoint},
        "discovery": {"tags": {"Environment": name}},
        # Checkpoints per test: a Record left by another test must never be found.
        "executor": {"result_storage": str(directory / "results"), "retry_delay_seconds": 0.1},
    }
    data.update(overrides)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def seeded(sandbox: str, tmp_path: Path) -> EnvironmentConfig:
    """A sandbox holding one seeded environment named 'demo'; its config."""
    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=sandbox))
    seed_environment(clients, "demo", 1)
    return parse_environment(write_environment(tmp_path, "demo", sandbox))


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `prefect server start` on a free port for the session; its API URL.

    One long-lived API (not a temporary per-process one) so that flow processes a test kills
    leave no orphan server behind.
    """
    port = free_port()
    home = tmp_path_factory.mktemp("prefect-home")
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "true",
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",  # the UI is told its own port
    }
    env.pop("PREFECT_API_URL", None)
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api"
    try:
        wait_until_answering(f"{url}/health", server, 90, home / "server.log")
        yield url
    finally:
        from prefect.logging.handlers import APILogHandler

        APILogHandler().flush()  # queued run logs go out before their server stops
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.fixture
def prefect_client_env(prefect_api: str) -> Iterator[str]:
    """Flows run in this test (and processes it starts) talk to the session's Prefect API."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    mp = pytest.MonkeyPatch()
    mp.setenv("PREFECT_API_URL", prefect_api)
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        yield prefect_api
    mp.undo()


# The Terraform modules' module-scoped sandbox and stack (tests/terraform_stack.py).
from terraform_stack import cli_config, stack, tf_sandbox  # noqa: E402, F401
