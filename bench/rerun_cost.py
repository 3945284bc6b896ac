"""What a checkpoint saves: phase 1 run fresh vs run again on the same environment.

Seeds one environment in an in-process sandbox, runs the phase 1 flow twice in this process
and prints, side by side from this one run, the wall time and the AWS calls each made (counted
at the sandbox server). The second run re-verifies every Record (read-only) and skips the
steps, so it must make no mutating call; the time ratio is what resuming costs relative to
doing the work (in the sandbox, where AWS waits are instant, this understates the saving).

    .venv/bin/python bench/rerun_cost.py
"""

import logging
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

os.environ.setdefault("PHASEGATE_HOME", tempfile.mkdtemp(prefix="phasegate-bench-"))
os.environ.setdefault("PHASEGATE_LOG_LEVEL", "WARNING")

from prefect import flow

from flows.phase1 import phase1
from phasegate.aws import AwsClients
from phasegate.checkpoints import checkpoint_storage
from phasegate.config import AwsSettings, parse_environment
from phasegate.sandbox.app import SandboxServer, is_mutating
from phasegate.sandbox.seed import seed_environment


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@flow
def warm_up() -> None:
    """An empty flow: starts the embedded Prefect API before anything is timed."""


def calls(url: str) -> tuple[int, int]:
    logged = requests.get(f"{url}/_phasegate/calls", timeout=10).json()
    requests.delete(f"{url}/_phasegate/calls", timeout=10)
    return len(logged), sum(1 for c in logged if is_mutating(c["action"]))


def main() -> int:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = SandboxServer(free_port()).start()
    try:
        seed_environment(AwsClients(AwsSettings(endpoint_url=server.url)), "bench", 1)
        folder = Path(tempfile.mkdtemp(prefix="phasegate-bench-env-"))
        path = folder / "bench.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "name": "bench",
                    "tier": "dev",
                    "aws": {"region": "us-east-1", "endpoint_url": server.url},
                    "discovery": {"tags": {"Environment": "bench"}},
                    "executor": {"result_storage": str(folder / "results")},
                }
            )
        )
        config = parse_environment(path)
        warm_up()  # the embedded Prefect API starts on the first flow; time only the runs
        calls(server.url)
        rows = []
        for label in ("first run (applies)", "second run (checkpoints)"):
            start = time.perf_counter()
            with checkpoint_storage(config):
                phase1(str(path))
            elapsed = time.perf_counter() - start
            total, mutating = calls(server.url)
            rows.append((label, elapsed, total, mutating))
    finally:
        server.stop()
    print(f"{'run':<28}{'seconds':>10}{'AWS calls':>12}{'mutating':>10}")
    for label, elapsed, total, mutating in rows:
        print(f"{label:<28}{elapsed:>10.2f}{total:>12}{mutating:>10}")
    first, second = rows
    print(f"second/first time ratio: {second[1] / first[1]:.2f}")
    print(f"second/first AWS call ratio: {second[2] / first[2]:.2f}")
    return 0 if second[3] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
