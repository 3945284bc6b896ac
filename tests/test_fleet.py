"""A fleet of 12 sandbox environments on a PostgreSQL-backed Prefect server with two workers.

The issue's end-to-end case: 6 dev, 4 staging, 2 prod environments, max_concurrency 3,
max_errors 1, and an unhealthy workload on one dev environment. The first fleet run finds that
environment failed and rolled back and stops before the staging wave; the runs never exceed
three in flight (read from the API's flow runs) and land on both workers (Prefect's process
workers, each a process of its own, spawning a process per run). With the fault
cleared, a second fleet run re-runs only what is left: the finished dev environments come
back from their checkpoints (every step Cached, no new ledger entry), staging completes, and
each prod environment waits for its approval (here nobody gives it: the runs are cancelled).
The wave-approval case runs on phasegate's thread worker alone.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from conftest import free_port, write_environment
from flowruns import FlowThread
from postgres import postgres_cluster, prefect_server
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Cancelled
from test_deployments import task_runs

from flows.fleet import FleetFailed, fleet, fleet_tag
from phasegate.aws import AwsClients
from phasegate.config import AwsSettings, EnvironmentConfig, parse_environment
from phasegate.fleet import FleetSettings, FleetSummary
from phasegate.gates import HealthGate
from phasegate.home import REPO_ROOT
from phasegate.ledger import Ledger
from phasegate.sandbox.seed import seed_environment
from phasegate.sandbox.simulator import WorkloadSimulator, set_fault
from phasegate.status import environment_tag
from tasks.approvals import resume_with
from tasks.registry import ordered

# Two minutes back: a minute's datapoints are published by the simulator's first tick in that
# minute, which on a loaded machine comes seconds late for the last of 12 environments; a
# one-minute window read in those seconds held no datapoint at all (inconclusive, the wave
# stopped). Two minutes always hold the minute before, published long since.
FAST_GATE = {"interval_seconds": 0.2, "count": 2, "lookback_minutes": 2}
TIERS = {"dev": 6, "staging": 4, "prod": 2}
FAULTY = "fl-dev-3"


@pytest.fixture(scope="module")
def pg_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prefect server on its own PostgreSQL cluster, both on 127.0.0.1; its API URL."""
    with postgres_cluster(free_port()) as database:
        home = tmp_path_factory.mktemp("prefect-pg-home")
        with prefect_server(free_port(), database, home) as url:
            yield url


@pytest.fixture
def api(pg_api: str) -> Iterator[str]:
    """This test's flows, and the processes it starts, talk to the PostgreSQL-backed server."""
    mp = pytest.MonkeyPatch()
    mp.setenv("PREFECT_API_URL", pg_api)
    with temporary_settings({PREFECT_API_URL: pg_api}):
        yield pg_api
    mp.undo()


PROCESS_WORKER = ["prefect", "worker", "start"]
THREAD_WORKER = ["phasegate.thread_worker"]


@pytest.fixture
def workers(api: str, tmp_path: Path) -> Iterator[Callable[..., list[Path]]]:
    """`start(pool, *commands)`: one worker process per command on one pool, two runs at most
    each; their log files. With max_concurrency 3, a full fleet must use two. The default is
    two of Prefect's process workers (a Python per run), as on several machines."""
    started: list[subprocess.Popen[bytes]] = []
    outs = []

    def start(pool: str, *commands: list[str]) -> list[Path]:
        logs = []
        for index, command in enumerate(commands or (PROCESS_WORKER, PROCESS_WORKER)):
            name = f"worker-{'ab'[index]}"
            log = tmp_path / f"{name}.log"
            outs.append(log.open("w"))
            env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_WORKER_QUERY_SECONDS": "1"}
            argv = [sys.executable, "-m", *command, "--pool", pool]
            started.append(
                subprocess.Popen(
                    [*argv, "--name", name, "--limit", "2"],
                    cwd=REPO_ROOT,
                    env=env,
                    stdout=outs[-1],
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            logs.append(log)
        return logs

    yield start
    for proc in started:  # a worker ignores SIGTERM: SIGINT, then SIGKILL for what is left
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    for out in outs:
        out.close()


@pytest.fixture
def fleet_envs(sandbox: str, tmp_path: Path) -> Iterator[tuple[Path, list[EnvironmentConfig]]]:
    """12 seeded environments (6 dev, 4 staging that auto-approve, 2 prod) in their own
    folder, with a simulator publishing their gate metrics."""
    folder = tmp_path / "environments"
    folder.mkdir()
    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=sandbox))
    configs: list[EnvironmentConfig] = []
    index = 1
    for tier, count in TIERS.items():
        for n in range(1, count + 1):
            name = f"fl-{tier[:4] if tier != 'staging' else 'stg'}-{n}"
            seed_environment(clients, name, index)
            index += 1
            extra = {"approvals": {"auto_approve": True}} if tier == "staging" else {}
            path = write_environment(
                folder, name, sandbox, tier=tier, gates=FAST_GATE, phases={"enabled": [1]},
                **extra,
            )  # fmt: skip
            configs.append(parse_environment(path))
    # A tick a second: 0.3 s made 12 environments' discovery most of the shared sandbox's
    # load in CI.
    simulator = WorkloadSimulator(lambda: configs, tick_seconds=1.0).start()
    yield folder, configs
    simulator.stop()
    set_fault(FAULTY, None)


def fleet_runs(tag: str) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]))
        )


def max_in_flight(runs: list[FlowRun]) -> int:
    """The most runs alive at one instant, from each run's creation to its end (or now)."""
    far = time.time() + 3600
    events = []
    for run in runs:
        events.append((run.created.timestamp(), 1))
        events.append((run.end_time.timestamp() if run.end_time else far, -1))
    peak = current = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        current += delta
        peak = max(peak, current)
    return peak


def by_environment(summary: FleetSummary) -> dict[str, str]:
    return {e.environment: e.result for e in summary.environments}


def ledger_sizes(configs: list[EnvironmentConfig]) -> dict[str, int]:
    return {c.name: sum(len(Ledger(c).chain(1, step)) for step in ordered(1)) for c in configs}


@pytest.mark.timeout(900)
def test_a_fleet_stops_at_max_errors_then_resumes_what_is_left_on_two_workers(
    fleet_envs: tuple[Path, list[EnvironmentConfig]],
    workers: Callable[..., list[Path]],
    api: str,
) -> None:
    folder, configs = fleet_envs
    pool = f"fleet-{uuid4().hex[:8]}"
    settings = FleetSettings(
        max_concurrency=3,
        max_errors=1,
        work_pool=pool,
        concurrency_limit=f"fleet-test-{uuid4().hex[:8]}",
        poll_seconds=0.5,
    )
    logs = workers(pool)
    set_fault(FAULTY, "unhealthy")
    timings: dict[str, float] = {}

    # First run: the faulty dev environment fails its gate and is rolled back; the dev wave
    # does not pass, so staging never starts.
    t0 = time.monotonic()
    first = FlowThread(lambda: fleet([], [1], settings, [str(folder)]), label="fleet 1")
    first.join(timeout=600)
    timings["first fleet run"] = time.monotonic() - t0
    set_fault(FAULTY, None)
    assert isinstance(first.error, FleetFailed), first.error
    summary = first.error.summary
    results = by_environment(summary)
    assert results[FAULTY] == "rolled back", results
    assert {results[c.name] for c in configs if c.tier == "dev" and c.name != FAULTY} == {
        "completed"
    }, results
    assert {results[c.name] for c in configs if c.tier != "dev"} == {"not started"}, results
    assert "wave staging did not start" in summary.stopped
    assert f"{FAULTY}: rolled back: health gate failed" in str(first.error)
    faulty = next(e for e in summary.environments if e.environment == FAULTY)
    assert faulty.gate == "fail" and faulty.phase_reached == 1
    assert FAULTY in summary.markdown() and "Total monthly saving" in summary.markdown()

    runs = fleet_runs(fleet_tag(str(first.run_id)))
    assert len(runs) == 6 and all(r.state and r.state.is_final() for r in runs)
    assert max_in_flight(runs) == 3, "three environments at once, never more"
    run_ids = {str(r.id) for r in runs}
    on_worker = [{i for i in run_ids if i in log.read_text()} for log in logs]
    assert on_worker[0] and on_worker[1], f"runs per worker: {[len(w) for w in on_worker]}"
    assert on_worker[0] | on_worker[1] == run_ids

    # Second run, once the operator sees the environment healthy again (the gate looks back
    # two minutes, so the unhealthy minutes must pass first): only what is left runs; prod
    # waits for its approval.
    config = next(c for c in configs if c.name == FAULTY)
    deadline = time.monotonic() + 240
    while not HealthGate(config).evaluate().passed:
        assert time.monotonic() < deadline, f"{FAULTY} never became healthy again"
        time.sleep(5)
    timings["until the faulty environment is healthy"] = time.monotonic() - t0
    finished = [c for c in configs if c.tier == "dev" and c.name != FAULTY]
    ledgers = ledger_sizes(finished)
    t0 = time.monotonic()
    second = FlowThread(lambda: fleet([], [1], settings, [str(folder)]), label="fleet 2")
    tag = fleet_tag(str(second.run_id))
    prod = {c.name for c in configs if c.tier == "prod"}
    deadline = time.monotonic() + 420
    while True:
        waiting = [r for r in fleet_runs(tag) if r.state and r.state.is_paused()]
        if {environment_tag(name) for name in prod} <= {t for r in waiting for t in r.tags}:
            break
        assert second.thread.is_alive(), f"the fleet ended before prod asked: {second.error!r}"
        assert time.monotonic() < deadline, "prod never waited for approval"
        time.sleep(1)
    timings["second run until prod waits"] = time.monotonic() - t0
    runs = fleet_runs(tag)
    assert max_in_flight(runs) <= 3
    for run in runs:
        names = {t for t in run.tags}
        if not names & {environment_tag(c.name) for c in finished}:
            continue
        assert run.state is not None and run.state.is_completed(), run.state
        steps = {name: state for name, state in task_runs(run.id) if name in ordered(1)}
        assert steps and set(steps.values()) == {"Cached"}, (run.name, steps)
    assert ledger_sizes(finished) == ledgers, "finished environments changed nothing"
    for name in [FAULTY] + [c.name for c in configs if c.tier == "staging"]:
        [run] = [r for r in runs if environment_tag(name) in r.tags]
        assert run.state is not None and run.state.is_completed(), (name, run.state)

    # Nobody approves here: the operator cancels prod's runs, and the fleet ends Failed.
    with get_client(sync_client=True) as client:
        for run in [r for r in runs if r.state and r.state.is_paused()]:
            client.set_flow_run_state(run.id, Cancelled(message="not today"), force=True)
    second.join(timeout=300)
    assert isinstance(second.error, FleetFailed), second.error
    results = by_environment(second.error.summary)
    assert {results[n] for n in prod} == {"cancelled"}, second.error.summary.failure_lines()
    assert all(results[c.name] == "completed" for c in configs if c.tier != "prod"), results
    print("timings:", {k: round(v, 1) for k, v in timings.items()})


@pytest.mark.timeout(600)
def test_a_prod_wave_asks_once_listing_every_plan_and_its_runs_ask_nothing(
    sandbox: str, tmp_path: Path, workers: Callable[..., list[Path]], api: str
) -> None:
    """`approve_per: wave`: one form on the fleet run before any prod run exists; each run
    takes that answer (bound to its plan's digests), nat.remove's extra approval included.
    The runs go to phasegate's thread worker alone (each in a thread of its one process)."""
    folder = tmp_path / "environments"
    folder.mkdir()
    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=sandbox))
    configs = []
    for index, name in enumerate(("wv-prod-1", "wv-prod-2"), start=1):
        seed_environment(clients, name, index)
        path = write_environment(
            folder, name, sandbox, tier="prod", gates=FAST_GATE, phases={"enabled": [1]}
        )
        configs.append(parse_environment(path))
    simulator = WorkloadSimulator(lambda: configs, tick_seconds=0.3).start()
    pool = f"wave-{uuid4().hex[:8]}"
    settings = FleetSettings(
        max_concurrency=2,
        approve_per="wave",
        work_pool=pool,
        concurrency_limit=f"wave-test-{uuid4().hex[:8]}",
        poll_seconds=0.5,
    )
    [log] = workers(pool, THREAD_WORKER)
    try:
        run = FlowThread(lambda: fleet([], [1], settings, [str(folder)]), label="wave")
        deadline = time.monotonic() + 240
        while True:
            with get_client(sync_client=True) as client:
                fleet_run = client.read_flow_run(run.run_id) if run.run_id else None
            if fleet_run and fleet_run.state and fleet_run.state.is_paused():
                break
            assert run.thread.is_alive(), f"the fleet ended before it asked: {run.error!r}"
            assert time.monotonic() < deadline, "the wave never asked for approval"
            time.sleep(1)
        tag = fleet_tag(str(run.run_id))
        assert fleet_runs(tag) == [], "no prod run starts before the wave is approved"
        form = wave_form(run.run_id)
        assert "wave `prod`: 2 environments" in form and "Total monthly cost delta" in form
        for config in configs:
            assert f"| `{config.name}` | prod |" in form and f"on `{config.name}`" in form
        assert "`nat.remove`" in form.split("\n---\n")[0], "the extra approval is on the form"
        resume_with(run.run_id, approved=True, approver="wave-lead", comment="both")
        run.join(timeout=420)
    finally:
        simulator.stop()
    assert run.error is None, run.error
    summary = run.result
    assert {e.environment: e.result for e in summary.environments} == {
        "wv-prod-1": "completed",
        "wv-prod-2": "completed",
    }
    runs = fleet_runs(fleet_tag(str(run.run_id)))
    assert len(runs) == 2
    assert all(str(r.id) in log.read_text() for r in runs), "the thread worker ran both"
    with get_client(sync_client=True) as client:
        for env_run in runs:
            states = {s.type for s in client.read_flow_run_states(env_run.id)}
            assert StateType.PAUSED not in states, f"{env_run.name} asked again"
    for config in configs:
        ledger = Ledger(config)
        applied = [r for step in ordered(1) for r in ledger.chain(1, step) if r.approver]
        assert applied and {r.approver for r in applied} == {"wave-lead"}, config.name


def wave_form(fleet_run_id: object) -> str:
    """The markdown of the wave's approval form, from the fleet run's artifacts."""
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["approval-wave-prod-phase-1"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[fleet_run_id]),
            )
        )
    return str(artifact.data)
