"""Resume: from restart to the first new step, after a kill at step k.

For each kill point, one seeded dev environment in an in-process sandbox: `phasegate run ENV
--phase 1 --auto-approve` runs as a process against the local Prefect server (`phasegate
server up`, started once), the sandbox holds step k's mutating action (a hold fault, never a
sleep), and the process group is SIGKILLed there. The operator then restarts: `phasegate
unlock ENV` (the holder is known dead) and the same `phasegate run`. Printed from this one run,
per kill point: seconds from the restart (unlock included) to the start of the first step
that had not started before the kill, and to the end of the run.

    .venv/bin/python bench/resume.py
"""

import logging
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import requests
import yaml
from sandbox_env import free_port

from phasegate.aws import AwsClients
from phasegate.config import AwsSettings, parse_environment
from phasegate.ledger import Ledger
from phasegate.local_server import start_server, stop_server
from phasegate.sandbox.app import SandboxServer
from phasegate.sandbox.seed import seed_environment
from phasegate.sandbox.simulator import WorkloadSimulator
from tasks.registry import ordered

REPO = Path(__file__).resolve().parent.parent
# (the step killed, the action the kill lands on)
KILL_POINTS = [("database.resize", "ModifyDBInstance"), ("nat.remove", "DeleteNatGateway")]


def actions(url: str) -> list[str]:
    return [c["action"] for c in requests.get(f"{url}/_phasegate/calls", timeout=10).json()]


def main() -> int:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    home = Path(os.environ["PHASEGATE_HOME"])
    sandbox = SandboxServer(free_port()).start()
    clients = AwsClients(AwsSettings(endpoint_url=sandbox.url))
    configs = []
    for index in range(1, len(KILL_POINTS) + 1):
        name = f"resume-{index}"
        seed_environment(clients, name, index)
        path = home / f"{name}.yaml"
        data = {
            "name": name,
            "tier": "dev",
            "aws": {"region": "us-east-1", "endpoint_url": sandbox.url},
            "discovery": {"tags": {"Environment": name}},
            "executor": {"result_storage": str(home / "results")},
            "gates": {"interval_seconds": 0.2, "count": 2},
        }
        path.write_text(yaml.safe_dump(data))
        configs.append(parse_environment(path))
    simulator = WorkloadSimulator(lambda: configs, tick_seconds=0.5).start()
    prefect = start_server()
    env = {**os.environ, "PREFECT_API_URL": prefect.api_url}
    cli = [sys.executable, "-m", "phasegate.cli"]
    rows = []
    try:
        for config, (step, action) in zip(configs, KILL_POINTS, strict=True):
            run = [*cli, "run", str(config.source), "--phase", "1", "--auto-approve"]
            requests.delete(f"{sandbox.url}/_phasegate/calls", timeout=10)
            requests.post(
                f"{sandbox.url}/_phasegate/faults",
                json={"action": action, "hold": 120, "times": 1},
                timeout=10,
            ).raise_for_status()
            first = subprocess.Popen(
                run, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
            while action not in actions(sandbox.url):
                assert first.poll() is None, f"the run ended before {action}"
                time.sleep(0.05)
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
            ledger = Ledger(config)
            started = {s for s in ordered(1) if ledger.chain(1, s)} | {step}
            restart = datetime.now(UTC)
            t0 = time.perf_counter()
            subprocess.run([*cli, "unlock", str(config.source)], env=env, cwd=REPO, check=True,
                           capture_output=True)  # fmt: skip
            subprocess.run(run, env=env, cwd=REPO, check=True, capture_output=True)
            total = time.perf_counter() - t0
            new = [
                r.started_at
                for s in ordered(1)
                if s not in started
                for r in Ledger(config).chain(1, s)
                if r.started_at > restart
            ]
            to_first = (min(new) - restart).total_seconds() if new else float("nan")
            rows.append((step, len(started) - 1, to_first, total))
    finally:
        simulator.stop()
        stop_server()
        sandbox.stop()
    print(f"{'killed in':<18}{'steps before':>13}{'to first new step s':>21}{'to end s':>10}")
    for step, before, to_first, total in rows:
        print(f"{step:<18}{before:>13}{to_first:>21.1f}{total:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
