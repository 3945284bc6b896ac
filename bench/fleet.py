"""A fleet of 1, 10 and 50 environments at max_concurrency 10 on one sandbox.

One in-process sandbox holds 61 seeded dev environments (a simulator publishes the gate
metrics of the environments in flight); a local Prefect server (`phasegate server up`) and one
worker (`--limit 10`: phasegate's thread worker, or with `--worker process` Prefect's process
worker) run the environments' deployment runs. The fleet flow runs phase 1 over 1, 10
and 50 of them in turn, each time on environments not migrated before. Printed from this one
run: each fleet's wall time, wall(10)/wall(1) and wall(50)/wall(1) (target: at most 5), and
the peak resident memory of every process of the run together, sampled every 0.5 s: this
process, the server, the worker and its flow-run processes (target: under 1.5 GB).

    .venv/bin/python bench/fleet.py [--sizes 1,10,50] [--worker thread|process]
"""

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import yaml
from prefect.settings import PREFECT_API_URL, temporary_settings
from sandbox_env import free_port

from flows.fleet import FleetFailed, fleet
from phasegate.aws import AwsClients
from phasegate.config import AwsSettings, parse_environment
from phasegate.fleet import FleetSettings
from phasegate.local_server import start_server, stop_server
from phasegate.sandbox.app import SandboxServer
from phasegate.sandbox.seed import seed_environment
from phasegate.sandbox.simulator import WorkloadSimulator
from phasegate.status import environment_tag

REPO = Path(__file__).resolve().parent.parent
RATIO_TARGET, RSS_TARGET_GB = 5.0, 1.5


def role(pid: int, root: int) -> str:
    """Which part of the run a process is, from its command line."""
    if pid == root:
        return "bench (sandbox, simulator, fleet flow)"
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    text = " ".join(a.decode(errors="replace") for a in argv)
    if "server" in text and "prefect" in text:
        return "prefect server"
    if "worker" in text:
        return "worker"
    return "flow runs"


def tree_rss(root: int) -> dict[int, int]:
    """Resident memory of `root` and each of its descendants (pid -> bytes), from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            status = (entry / "status").read_text()
        except OSError:
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        line = next((x for x in status.splitlines() if x.startswith("VmRSS:")), "VmRSS: 0 kB")
        rss[pid] = int(line.split()[1]) * 1024
    found, stack = {}, [root]
    while stack:
        pid = stack.pop()
        found[pid] = rss.get(pid, 0)
        stack += children.get(pid, [])
    return found


class PeakRss:
    """Samples this process tree's resident memory every 0.5 s; `peak` is the highest total,
    `at_peak` what each part held then (MB, process count), `largest_run` the largest single
    flow-run process seen."""

    def __init__(self) -> None:
        self.peak = 0
        self.at_peak: dict[str, tuple[float, int]] = {}
        self.largest_run = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        root = os.getpid()
        while not self._stop.wait(0.5):
            sample = tree_rss(root)
            by_role: dict[str, tuple[float, int]] = {}
            for pid, rss in sample.items():
                name = role(pid, root)
                if name == "flow runs":
                    self.largest_run = max(self.largest_run, rss)
                mb, count = by_role.get(name, (0.0, 0))
                by_role[name] = (mb + rss / 1024**2, count + 1)
            if sum(sample.values()) > self.peak:
                self.peak, self.at_peak = sum(sample.values()), by_role

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def in_flight(configs: list, api_url: str) -> Callable[[], list]:
    """The configs whose deployment runs are Pending or Running now, read from the API at
    most every 5 s (plain HTTP: the simulator's thread has no Prefect settings context)."""
    by_tag = {environment_tag(c.name): c for c in configs}
    seen: dict[str, Any] = {"at": 0.0, "configs": []}

    def current() -> list:
        if time.monotonic() - seen["at"] > 5:
            body = {"flow_runs": {"state": {"type": {"any_": ["PENDING", "RUNNING"]}}}}
            try:
                runs = requests.post(f"{api_url}/flow_runs/filter", json=body, timeout=10).json()
            except requests.RequestException:
                return seen["configs"]  # the server is busy or stopping: the last answer
            tags = {tag for run in runs for tag in run.get("tags", [])}
            seen["configs"] = [c for tag, c in by_tag.items() if tag in tags]
            seen["at"] = time.monotonic()
        return seen["configs"]

    return current


def write_environments(folder: Path, url: str, count: int) -> list:
    clients = AwsClients(AwsSettings(endpoint_url=url))
    configs = []
    for index in range(1, count + 1):
        name = f"fleet-{index:02d}"
        seed_environment(clients, name, index)
        path = folder / f"{name}.yaml"
        data = {
            "name": name,
            "tier": "dev",
            "aws": {"region": "us-east-1", "endpoint_url": url},
            "discovery": {"tags": {"Environment": name}},
            "executor": {"result_storage": str(folder.parent / "results")},
            "gates": {"interval_seconds": 0.2, "count": 2, "lookback_minutes": 5},
            "phases": {"enabled": [1]},
        }
        path.write_text(yaml.safe_dump(data))
        configs.append(parse_environment(path))
    return configs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,50")
    parser.add_argument(
        "--worker",
        choices=["thread", "process"],
        default="thread",
        help="phasegate.thread_worker (runs in threads) or `prefect worker start` (processes)",
    )
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    home = Path(os.environ["PHASEGATE_HOME"])
    sandbox = SandboxServer(free_port()).start()
    (home / "seeded").mkdir()
    configs = write_environments(home / "seeded", sandbox.url, sum(sizes))
    prefect = start_server()
    # The simulator stands in for the workloads' own traffic. Each tick discovers each of its
    # environments (18 reads) before it publishes: for all 50 environments of a fleet it made
    # most of the single sandbox's load, fell behind, and a gate found no data (measured). So
    # it publishes for the environments whose runs are in flight now (their gates read the
    # metrics; it backfills an hour the first time it sees one).
    simulator = WorkloadSimulator(in_flight(configs, prefect.api_url), tick_seconds=2.0).start()
    os.environ["PREFECT_API_URL"] = prefect.api_url
    pool = "bench-fleet"
    command = (
        ["-m", "phasegate.thread_worker"]
        if args.worker == "thread"
        else ["-m", "prefect", "worker", "start"]
    )
    worker = subprocess.Popen(
        [sys.executable, *command, "--pool", pool, "--limit", "10"],
        cwd=REPO, env={**os.environ, "PREFECT_WORKER_QUERY_SECONDS": "1"},
        stdout=(home / "worker.log").open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    walls: dict[int, float] = {}
    failures: dict[int, list[str]] = {}
    settings = FleetSettings(max_concurrency=10, work_pool=pool, poll_seconds=0.5)
    first = 0
    try:
        with PeakRss() as memory, temporary_settings({PREFECT_API_URL: prefect.api_url}):
            for size in sizes:
                folder = home / f"fleet-of-{size}"
                folder.mkdir()
                for config in configs[first : first + size]:
                    assert config.source is not None
                    (folder / config.source.name).write_text(config.source.read_text())
                first += size
                start = time.perf_counter()
                try:
                    fleet([], [1], settings, [str(folder)])
                except FleetFailed as exc:  # reported below, with the figures
                    failures[size] = [exc.summary.stopped, *exc.summary.failure_lines()]
                walls[size] = time.perf_counter() - start
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        simulator.stop()
        stop_server()
        sandbox.stop()
    one = walls[sizes[0]]
    print(f"worker: {args.worker}")
    print(f"{'environments':>12}{'wall s':>10}{'x one':>8}")
    for size, wall in walls.items():
        print(f"{size:>12}{wall:>10.1f}{wall / one:>8.2f}")
    peak_gb = memory.peak / 1024**3
    print(f"peak RSS of every process together: {peak_gb:.2f} GB (target < {RSS_TARGET_GB})")
    for name, (mb, count) in sorted(memory.at_peak.items()):
        print(f"  at the peak, {name}: {mb:,.0f} MB in {count} process(es)")
    print(f"  largest flow-run process: {memory.largest_run / 1024**2:,.0f} MB")
    ratio = walls[sizes[-1]] / one
    print(f"wall({sizes[-1]}) / wall({sizes[0]}): {ratio:.2f} (target <= {RATIO_TARGET})")
    for size, lines in failures.items():
        print(f"the fleet of {size} FAILED, so its wall time is not a figure:", *lines, sep="\n  ")
    met = ratio <= RATIO_TARGET and peak_gb < RSS_TARGET_GB
    return 0 if met and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
