"""Deployments on a real `prefect server start`, a process work pool and a worker subprocess.

The integration test is the issue's: deploy phase 1 of a staging environment in the sandbox,
start `prefect worker start`, trigger the deployment, find the run Suspended (its process gone,
nothing changed in AWS), approve it with `phasegate approve`, and see the resumed run complete.
A second run of the same deployment finds every step's checkpoint: its run-step task runs are
Cached and it makes no mutating AWS call.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
import yaml
from conftest import write_environment
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun, State
from prefect.deployments import run_deployment
from prefect.states import Cancelled
from test_phase1 import assert_phase1_end_state, clear_calls, mutating_calls
from typer.testing import CliRunner

from flows.phase1 import phase1
from flows.rollback import rollback_phase
from phasegate import deploy as deployments
from phasegate.aws import AwsClients
from phasegate.cli import app
from phasegate.config import AwsSettings, EnvironmentConfig, parse_environment
from phasegate.home import REPO_ROOT
from phasegate.inventory import discover
from phasegate.ledger import Ledger
from phasegate.sandbox.seed import seed_environment
from phasegate.sandbox.simulator import WorkloadSimulator
from phasegate.status import environment_tag
from tasks.locks import limit_name
from tasks.registry import ordered
from tasks.status import environment_status

pytestmark = pytest.mark.usefixtures("prefect_client_env")

PHASE_1_STEPS = set(ordered(1))
FAST_GATE = {"interval_seconds": 0.2, "count": 2, "lookback_minutes": 5}


def wait_for_run(
    run_id: UUID, done: Callable[[State], bool], what: str, log: Path, timeout: float = 120
) -> FlowRun:
    """Poll the API until the run's state satisfies `done`; fail with the worker's log."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run_id)
            if run.state is not None and done(run.state):
                return run
            if (run.state is not None and run.state.is_final()) or time.monotonic() > deadline:
                raise AssertionError(
                    f"flow run {run_id} never became {what}: it is {run.state!r}\n"
                    f"worker log:\n{log.read_text()[-6000:]}"
                )
            time.sleep(0.25)


def held_slots(environment: str) -> int:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(limit_name(environment)).active_slots


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def changes(sandbox: str) -> list[str]:
    """Mutating AWS calls at the sandbox, but the simulator's metric publishing."""
    return [c for c in mutating_calls(sandbox) if c != "monitoring:PutMetricData"]


def task_runs(run_id: UUID) -> list[tuple[str, str]]:
    """(task run name, state name) of a flow run's task runs."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
    return sorted((r.name, r.state.name if r.state else "") for r in runs)


def approve(run_id: UUID, approver: str) -> None:
    result = CliRunner().invoke(
        app,
        ["approve", str(run_id), "--approver", approver, "--comment", "in the window"],
    )
    assert result.exit_code == 0, result.output


@pytest.fixture
def worker(tmp_path: Path, prefect_api: str) -> Iterator[Callable[[str], Path]]:
    """Start `prefect worker start --pool POOL` in the repository; its log file."""
    started: list[subprocess.Popen[bytes]] = []
    logs = []

    def start(pool: str) -> Path:
        log = tmp_path / f"worker-{pool}.log"
        out = log.open("w")
        logs.append(out)
        env = {
            **os.environ,
            "PREFECT_API_URL": prefect_api,
            "PREFECT_WORKER_QUERY_SECONDS": "1",  # pick runs (and resumed runs) up quickly
            "PREFECT_WORKER_PREFETCH_SECONDS": "1",
        }
        started.append(
            subprocess.Popen(
                [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool],
                cwd=REPO_ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        return log

    yield start
    for proc in started:  # a worker ignores SIGTERM from here: SIGINT, then SIGKILL
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # any flow-run child left behind
    for out in logs:
        out.close()


@pytest.fixture
def trigger(worker: Callable[[str], Path]) -> Iterator[Callable[[str], FlowRun]]:
    """run_deployment(NAME) without waiting; the run it made.

    After the test, passed or failed, a run left unfinished (Suspended for an answer nobody
    gave, say) is cancelled, so no test leaves a run waiting on the session's server. This
    fixture depends on `worker`, so it is torn down first: the worker is still up to see the
    cancellation, and stopping it kills any flow process left behind.
    """
    runs: list[FlowRun] = []

    def start(name: str) -> FlowRun:
        runs.append(run_deployment(name, timeout=0))
        return runs[-1]

    yield start
    with get_client(sync_client=True) as client:
        for run in runs:
            state = client.read_flow_run(run.id).state
            if state is None or not state.is_final():
                client.set_flow_run_state(run.id, Cancelled(message="test teardown"), force=True)


@pytest.fixture
def make_env(sandbox: str, tmp_path: Path) -> Iterator[Callable[[str, str], EnvironmentConfig]]:
    """Seed an environment of a tier (phase 1 only, no maintenance window, so a triggered run
    starts at once), with a simulator publishing healthy gate metrics for it."""
    configs: list[EnvironmentConfig] = []
    simulator = WorkloadSimulator(lambda: configs, tick_seconds=0.3)

    def make(name: str, tier: str) -> EnvironmentConfig:
        clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=sandbox))
        seed_environment(clients, name, 1)
        path = write_environment(
            tmp_path, name, sandbox, tier=tier, gates=FAST_GATE, phases={"enabled": [1]}
        )
        configs.append(parse_environment(path))
        return configs[-1]

    simulator.start()
    yield make
    simulator.stop()


@pytest.fixture
def staging(make_env: Callable[[str, str], EnvironmentConfig]) -> EnvironmentConfig:
    """A staging environment: its phases wait for an approval."""
    return make_env("dep-stage", "staging")


@pytest.mark.timeout(600)  # its waits for the worker allow 120 s each, five of them
def test_a_deployed_phase_suspends_for_approval_and_resumes_from_checkpoints(
    staging: EnvironmentConfig,
    sandbox: str,
    worker: Callable[[str], Path],
    trigger: Callable[[str], FlowRun],
) -> None:
    pool = f"pg-test-{uuid4().hex[:8]}"
    [item] = deployments.deploy(str(staging.source), pool)
    assert item.full_name == "migration/dep-stage-phase-1" and item.cron is None
    assert item.parameters == {"env": str(staging.source), "phases": [1]}
    log = worker(pool)
    clear_calls(sandbox)
    timings: dict[str, float] = {}

    t0 = time.monotonic()
    run = trigger(item.full_name)
    suspended = wait_for_run(run.id, lambda s: s.is_paused(), "Suspended", log)
    timings["trigger -> suspended"] = time.monotonic() - t0
    assert suspended.state is not None and suspended.state.name == "Suspended"
    assert environment_tag(staging.name) in suspended.tags
    assert changes(sandbox) == [], "nothing may change before the approval"
    assert len(discover(staging).nat_gateways) == 2
    [pending] = environment_status(str(staging.source)).pending_approvals
    assert wait_until(lambda: held_slots(staging.name) == 0), "suspended: the lock is free"
    assert pending.command == f"phasegate approve {run.id} --approver NAME", pending

    t0 = time.monotonic()
    approve(run.id, "ana")
    done = wait_for_run(run.id, lambda s: s.is_completed(), "Completed", log)
    timings["approve -> completed"] = time.monotonic() - t0
    assert_phase1_end_state(staging)
    steps = [name for name, _ in task_runs(run.id) if "." in name and "checkpoint" not in name]
    assert {"nat.assess", "nat.remove", "database.resize", "cache.resize"} <= set(steps)
    names = [name for name, _ in task_runs(run.id)]
    assert names.count("plan phase 1") == 2, "resumed from the top in a new process"
    assert done.state is not None and done.state.is_completed()

    # A second run of the deployment finds every step's checkpoint (written by the first
    # run's worker process): nothing is left to change, so nothing is asked or applied.
    clear_calls(sandbox)
    t0 = time.monotonic()
    again = trigger(item.full_name)
    wait_for_run(again.id, lambda s: s.is_completed(), "Completed", log)
    timings["second run, nothing to approve"] = time.monotonic() - t0
    step_states = {name: state for name, state in task_runs(again.id) if name in PHASE_1_STEPS}
    assert step_states and set(step_states.values()) == {"Cached"}, step_states
    assert changes(sandbox) == []
    assert_phase1_end_state(staging)
    print("timings:", {k: round(v, 1) for k, v in timings.items()})


def test_deployments_are_scheduled_by_the_phase_window_in_the_environment_timezone(
    sandbox: str, tmp_path: Path
) -> None:
    schedule: dict[str, Any] = {
        "timezone": "Europe/Berlin",
        "windows": {
            "nightly": {"days": ["tue", "wed", "thu"], "start": "02:30", "duration_minutes": 120},
            "weekend": {"days": ["sun", "sat"], "start": "06:00", "duration_minutes": 240},
        },
        "phase_windows": {1: "nightly", 2: "weekend"},
    }
    path = write_environment(tmp_path, "dep-cron", sandbox, schedule=schedule)
    pool = f"pg-cron-{uuid4().hex[:8]}"  # no worker: the scheduled runs stay where they are
    items = deployments.deploy(str(path), pool)
    assert [(i.name, i.cron) for i in items] == [
        ("dep-cron-phase-1", "30 2 * * 2,3,4"),
        ("dep-cron-phase-2", "0 6 * * 0,6"),
        ("dep-cron-phase-3", None),
    ]

    def read_back() -> dict[str, Any]:
        with get_client(sync_client=True) as client:
            assert client.read_work_pool(pool).type == "process"
            found = {}
            for i in items:
                d = client.read_deployment_by_name(i.full_name)
                found[i.name] = (
                    [(s.schedule.cron, s.schedule.timezone) for s in d.schedules],  # type: ignore[union-attr]
                    d.parameters,
                    d.tags,
                    d.work_pool_name,
                    d.entrypoint,
                )
        return found

    found = read_back()
    assert found["dep-cron-phase-1"] == (
        [("30 2 * * 2,3,4", "Europe/Berlin")],
        {"env": str(path.resolve()), "phases": [1]},
        [environment_tag("dep-cron")],
        pool,
        "flows/migration.py:migration",
    )
    assert found["dep-cron-phase-2"][0] == [("0 6 * * 0,6", "Europe/Berlin")]
    assert found["dep-cron-phase-3"][0] == []

    # Redeploying after the window is dropped from the config takes its schedule away.
    write_environment(tmp_path, "dep-cron", sandbox, schedule={**schedule, "phase_windows": {}})
    deployments.deploy(str(path), pool)
    assert [v[0] for v in read_back().values()] == [[], [], []]


def test_deploy_without_a_prefect_server_is_refused(
    tmp_path: Path, sandbox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    path = write_environment(tmp_path, "dep-none", sandbox)
    monkeypatch.delenv("PREFECT_API_URL")
    with temporary_settings({PREFECT_API_URL: None}):
        result = CliRunner().invoke(app, ["deploy", str(path)])
    assert result.exit_code == 2
    assert "PREFECT_API_URL" in result.output


@pytest.mark.timeout(600)  # one run, resumed twice in new worker processes: 120 s per wait
def test_prod_suspends_twice_and_the_second_resume_reuses_the_finished_step(
    make_env: Callable[[str, str], EnvironmentConfig],
    sandbox: str,
    worker: Callable[[str], Path],
    trigger: Callable[[str], FlowRun],
) -> None:
    """Prod asks for the phase and again right before nat.remove: after the second answer the
    flow runs from the top once more and finds nat.assess, done between the two, Cached."""
    config = make_env("dep-prod", "prod")
    pool = f"pg-prod-{uuid4().hex[:8]}"
    [item] = deployments.deploy(str(config.source), pool)
    log = worker(pool)
    run = trigger(item.full_name)
    first = wait_for_run(run.id, lambda s: s.is_paused(), "Suspended (phase approval)", log)
    approve(run.id, "ana")
    assert first.state is not None
    wait_for_run(
        run.id,
        lambda s: s.is_paused() and s.id != first.state.id,  # type: ignore[union-attr]
        "Suspended again (nat.remove approval)",
        log,
    )
    assert dict(task_runs(run.id)).get("nat.assess") == "Completed"
    assert "nat.remove" not in dict(task_runs(run.id))
    assert len(discover(config).nat_gateways) == 2, "nat.remove waits for its own approval"
    approve(run.id, "bo")
    wait_for_run(run.id, lambda s: s.is_completed(), "Completed", log)
    assert_phase1_end_state(config)
    runs = task_runs(run.id)
    assert sorted(state for name, state in runs if name == "nat.assess") == ["Cached", "Completed"]
    assert [name for name, _ in runs].count("plan phase 1") == 3
    record = Ledger(config).checkpoint(1, "nat.remove")
    assert record is not None and record.approver == "bo"  # the step's own approval


def test_checkpoints_in_s3_are_written_by_the_steps_and_found_by_a_rerun(
    sandbox: str, tmp_path: Path
) -> None:
    """executor.result_storage: s3://BUCKET/PREFIX (prefect-aws S3Bucket, the sandbox's S3)."""
    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=sandbox))
    seed_environment(clients, "dep-s3", 1)
    clients.s3.create_bucket(Bucket="pg-checkpoints")
    config = parse_environment(
        write_environment(
            tmp_path, "dep-s3", sandbox, executor={"result_storage": "s3://pg-checkpoints/ckpt"}
        )
    )
    records = phase1(str(config.source))  # no checkpoint_storage() around it: like a worker
    assert_phase1_end_state(config)
    keys = [o["Key"] for o in clients.s3.list_objects_v2(Bucket="pg-checkpoints")["Contents"]]
    assert f"ckpt/{records[1].key}" in keys, keys  # the nat.remove Record, under the prefix
    ledger = Ledger(config)
    chain = [k for k in keys if k.startswith("ckpt/dep-s3/1/nat.remove/ledger/")]
    outcomes = [k.rsplit("-", 1)[-1].removesuffix(".json") for k in sorted(chain)]
    assert outcomes[0] == "intent" and outcomes[-1] == "applied"
    assert set(outcomes[1:-1]) <= {"progress"}
    assert ledger.checkpoint(1, "nat.remove") == records[1]

    clear_calls(sandbox)
    state = phase1(str(config.source), return_state=True)
    assert state.is_completed()
    assert [c for c in mutating_calls(sandbox) if not c.startswith("s3:")] == []
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    step_states = {name: s for name, s in task_runs(run.id) if name in PHASE_1_STEPS}
    assert set(step_states.values()) == {"Cached"}, step_states

    assert rollback_phase(str(config.source), 1)["nat.remove"] == "rolled back"
    assert len(discover(config).nat_gateways) == 2
    head = ledger.head(1, "nat.remove")
    assert head is not None and head.outcome == "rolled_back"  # appended in S3
    assert ledger.checkpoint(1, "nat.remove") is None


def test_prefect_yaml_declares_what_phasegate_deploy_creates_for_the_demo() -> None:
    spec = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    declared = [
        (
            d["name"], d["entrypoint"], d["parameters"], tuple(d["tags"]), d["work_pool"]["name"],
            d["schedules"], d["description"],
        )
        for d in spec["deployments"]
    ]  # fmt: skip
    expected = [
        (
            i.name, deployments.ENTRYPOINT, i.parameters, i.tags, deployments.DEFAULT_POOL,
            [{"cron": i.cron, "timezone": i.timezone}] if i.cron else [],
            deployments.description(i),
        )
        for i in deployments.plan_deployments("demo")
    ]  # fmt: skip
    assert declared == expected
