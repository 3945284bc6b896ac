"""What every benchmark starts from: an in-process sandbox with one seeded environment.

Import this module first: it points PHASEGATE_HOME at a fresh folder before Prefect is
imported, so a benchmark never touches the user's checkpoints or Prefect home.
"""

import logging
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("PHASEGATE_HOME", tempfile.mkdtemp(prefix="phasegate-bench-"))
os.environ.setdefault("PHASEGATE_LOG_LEVEL", "WARNING")

import yaml
from prefect import flow

from phasegate.aws import AwsClients
from phasegate.config import AwsSettings, EnvironmentConfig, parse_environment
from phasegate.sandbox.app import SandboxServer
from phasegate.sandbox.seed import seed_environment


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@flow
def warm_up() -> None:
    """An empty flow: starts the embedded Prefect API before anything is timed."""


@contextmanager
def seeded_environment(name: str = "bench") -> Iterator[tuple[str, EnvironmentConfig]]:
    """A running sandbox with environment `name` seeded (at latency factor 0) and its config
    in a temporary folder; yields (sandbox URL, config). Prefect is warmed up already."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = SandboxServer(free_port()).start()
    try:
        seed_environment(AwsClients(AwsSettings(endpoint_url=server.url)), name, 1)
        folder = Path(tempfile.mkdtemp(prefix="phasegate-bench-env-"))
        path = folder / f"{name}.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "name": name,
                    "tier": "dev",
                    "aws": {"region": "us-east-1", "endpoint_url": server.url},
                    "discovery": {"tags": {"Environment": name}},
                    "executor": {"result_storage": str(folder / "results")},
                }
            )
        )
        warm_up()
        yield server.url, parse_environment(path)
    finally:
        server.stop()
