"""`phasegate status` against a real Prefect API, with runs made the honest way.

Small flows defined here run under `prefect.tags(environment_tag(NAME))`, as the CLI runs
phasegate's flows: one completes; one runs a step task (`nat.assess`), then a subflow that
runs `nat.remove`, then pauses for an answer in a background thread. Status must find them by
the tag, say the paused run waits for approval (with the command that answers it) and that
the environment is at phase 1, step nat.remove; after the answer, nothing is pending. Gate
artifacts are published by the real `health_gate` task on a seeded sandbox environment, then
by hand. Each test uses its own environment name: other tests share the session's server.
"""

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from conftest import free_port, write_environment
from flowruns import FlowThread, stop_all
from prefect import flow, tags, task
from prefect.artifacts import create_markdown_artifact
from prefect.flow_runs import pause_flow_run, resume_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run as current_run
from prefect.settings import PREFECT_API_URL, temporary_settings
from rich.console import Console
from typer.testing import CliRunner

from phasegate.aws import AwsClients
from phasegate.cli import app
from phasegate.config import AwsSettings
from phasegate.errors import PhasegateError
from phasegate.gates import GateResult, render_markdown
from phasegate.sandbox.seed import seed_environment
from phasegate.status import (
    GateSummary,
    PendingApproval,
    RunSummary,
    StatusReport,
    environment_tag,
    status_table,
)
from tasks.gates import artifact_key, health_gate
from tasks.status import environment_status

POLL = 0.2  # seconds between the paused flow's checks for an answer
RUN_IDS: dict[str, UUID] = {}


def unique(prefix: str = "status") -> str:
    return f"{prefix}-{uuid4().hex[:8]}"


class Answer(RunInput):
    approved: bool
    approver: str


@task(name="run-step", task_run_name="{step_id}")
def step(step_id: str) -> str:
    return step_id


@flow(name="status-done", flow_run_name="status test done {label}")
def finishes(label: str) -> str:
    step("nat.assess")
    return "done"


@flow(name="status-phase", flow_run_name="status test phase {label}")
def phase_subflow(label: str) -> str:
    return step("nat.remove")


@flow(name="status-paused", flow_run_name="status test paused {label}")
def pauses(label: str) -> str:
    RUN_IDS[label] = UUID(current_run.id)
    step("nat.assess")
    phase_subflow(label)  # the step runs in a subflow, as phases and rollbacks do
    answer = pause_flow_run(wait_for_input=Answer, timeout=60, poll_interval=POLL)
    return answer.approver


@flow(name="status-gate", flow_run_name="status test gate {env}")
def gate_flow(env: str) -> GateResult:
    return health_gate(env)


@flow(name="status-publish", flow_run_name="status test publish {key}")
def publish_gate(key: str, markdown: str) -> None:
    create_markdown_artifact(markdown=markdown, key=key, description="published by a test")


def tagged(environment: str, target: Callable[..., Any], *args: Any) -> Any:
    with tags(environment_tag(environment)):
        return target(*args)


@pytest.fixture
def background(prefect_client_env: str) -> Iterator[Callable[[str], FlowThread]]:
    started: list[FlowThread] = []

    def start(environment: str) -> FlowThread:
        label = uuid4().hex[:8]
        target = lambda: tagged(environment, pauses, label)  # noqa: E731
        started.append(FlowThread(target, lambda: RUN_IDS.get(label), label))
        return started[-1]

    def reject(run_id: UUID) -> None:
        resume_flow_run(run_id, run_input={"approved": False, "approver": "x"})

    yield start
    stop_all(started, reject)


def status(*args: str) -> Any:
    return CliRunner().invoke(app, ["status", *args])


def test_status_finds_the_runs_the_current_step_and_the_pending_approval(
    background: Callable[[str], FlowThread], tmp_path: Path, moto_server: str
) -> None:
    name = unique()
    path = write_environment(tmp_path, name, moto_server)  # the CLI checks AWS is reachable
    assert tagged(name, finishes, "first") == "done"
    tagged(unique("other"), finishes, "elsewhere")  # another environment's run
    bg = background(name)
    run_id = str(bg.wait_paused())

    report = environment_status(str(path))
    assert report.environment == name
    runs = {run.name: run for run in report.recent_runs}
    assert set(runs) == {
        "status test done first",
        f"status test paused {bg.label}",
        f"status test phase {bg.label}",  # the subflow carries the tag too
    }
    done, paused = runs["status test done first"], runs[f"status test paused {bg.label}"]
    assert (done.flow, done.state) == ("status-done", "Completed")
    assert (paused.id, paused.flow, paused.state) == (run_id, "status-paused", "Paused")
    assert paused.started is not None and done.started is not None
    order = [run.id for run in report.recent_runs]
    assert order.index(paused.id) < order.index(done.id)  # newest first

    assert report.current_run is not None and report.current_run.id == run_id
    # nat.remove ran after nat.assess, in the subflow: the latest step wins
    assert (report.current_phase, report.current_step) == (1, "nat.remove")
    assert report.current_phase_name == "cost"
    [pending] = report.pending_approvals
    assert (pending.id, pending.name) == (run_id, f"status test paused {bg.label}")
    assert pending.asks_for_input
    assert pending.command == f"phasegate approve {run_id} --approver NAME"
    assert report.last_gate is None and report.gate is None

    result = status(str(path))
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"Status of {name}" in out
    assert "phase 1 (cost), step nat.remove" in out
    assert f"phasegate approve {run_id} --approver NAME" in out
    assert run_id in out and "status-done" in out and "Completed" in out
    assert f"status test paused {bg.label}, paused since" in " ".join(out.split())
    assert "none published yet" in out

    as_json = status(str(path), "--json")
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert data["current_step"] == "nat.remove" and data["current_phase"] == 1
    assert data["pending_approvals"][0]["command"] == pending.command

    resume_flow_run(UUID(run_id), run_input={"approved": True, "approver": "alice"})
    bg.join()
    assert bg.error is None and bg.result == "alice"

    after = environment_status(str(path))
    assert after.pending_approvals == [] and after.current_run is None
    assert after.current_step is None and after.current_phase is None
    assert {run.id: run.state for run in after.recent_runs}[run_id] == "Completed"
    quiet = status(str(path))
    assert quiet.exit_code == 0, quiet.output
    assert "no run in progress" in quiet.output and "Pending approvals: none" in quiet.output


def test_status_shows_the_last_gate_verdict(
    sandbox: str, prefect_client_env: str, tmp_path: Path
) -> None:
    name = unique()
    seed_environment(AwsClients(AwsSettings(region="us-east-1", endpoint_url=sandbox)), name, 1)
    path = write_environment(tmp_path, name, sandbox, gates={"interval_seconds": 0.01, "count": 1})
    result = tagged(name, gate_flow, str(path))  # the real gate task publishes its artifact
    report = environment_status(str(path))
    assert report.gate is not None
    assert (report.gate.verdict, report.gate.reason) == (result.verdict, result.reason)
    assert report.last_gate == f"{result.verdict.upper()}: {result.reason}"
    assert report.gate.rounds.startswith("1 of 1 round(s) ran")
    assert report.gate.flow_run_id == report.recent_runs[0].id
    shown = status(str(path))
    assert shown.exit_code == 0, shown.output
    assert f"Last health gate: {result.verdict.upper()} at " in shown.output

    # A newer gate replaces it; a '|' in the reason survives the markdown table escaping.
    now = datetime.now(UTC)
    passed = GateResult(
        environment=name, verdict="pass", rounds=[], failures=0, inconclusives=0,
        reason="3 round(s): every check passed | 0 inconclusive", count=3,
        started_at=now, finished_at=now,
    )  # fmt: skip
    tagged(name, publish_gate, artifact_key(name), render_markdown(passed))
    newer = environment_status(str(path))
    assert newer.gate is not None and newer.gate.verdict == "pass"
    assert newer.last_gate == "PASS: 3 round(s): every check passed | 0 inconclusive"
    shown = status(str(path))
    assert shown.exit_code == 0, shown.output
    assert "Last health gate: PASS at " in shown.output
    assert "every check passed | 0 inconclusive" in " ".join(shown.output.split())


def test_status_without_a_reachable_api_names_prefect_api_url(
    tmp_path: Path, moto_server: str
) -> None:
    path = write_environment(tmp_path, unique(), moto_server)
    dead = f"http://127.0.0.1:{free_port()}/api"
    with temporary_settings({PREFECT_API_URL: dead}):
        with pytest.raises(PhasegateError) as caught:
            environment_status(str(path))
        assert "cannot reach the Prefect API" in str(caught.value)
        assert dead in str(caught.value) and "PREFECT_API_URL" in str(caught.value)
        result = status(str(path))
    assert result.exit_code == 1
    assert "PREFECT_API_URL" in result.stderr and dead in result.stderr


def test_status_of_an_unknown_environment_is_bad_input() -> None:
    result = status(f"no-such-env-{uuid4().hex[:6]}")
    assert result.exit_code == 2
    assert "not found" in result.stderr


def test_layout_shows_every_section_and_keeps_commands_on_one_line() -> None:
    run_id = str(uuid4())
    started = datetime(2025, 3, 1, 2, 0, 5, tzinfo=UTC)
    pending = PendingApproval(
        id=run_id, name="acme-prod: migration", flow="migration", state="Paused",
        started=started, paused_since=started,
    )  # fmt: skip
    report = StatusReport(
        environment="acme-prod",
        recent_runs=[
            RunSummary(**pending.model_dump(include=set(RunSummary.model_fields))),
            RunSummary(
                id=str(uuid4()),
                name="acme-prod: rollback",
                flow="rollback-phase",
                state="Failed",
                started=None,
            ),
        ],
        current_run=pending,
        current_phase=1,
        current_phase_name="cost",
        current_step="database.resize",
        pending_approvals=[
            pending,
            plain := PendingApproval(
                id=str(uuid4()),
                name="acme-prod: hand pause",
                flow="migration",
                state="Paused",
                asks_for_input=False,
            ),
        ],
        gate=GateSummary(verdict="fail", reason="alb-5xx-ratio on demo-alb", summary="FAIL"),
        last_gate="FAIL",
    )
    console = Console(record=True, width=80, color_system=None)
    console.print(status_table(report))
    text = console.export_text()
    assert "Current: phase 1 (cost), step database.resize\n  in acme-prod: migration" in text
    assert f"\n    phasegate approve {run_id} --approver NAME\n" in text  # one line of its own
    assert "Last health gate: FAIL: alb-5xx-ratio on demo-alb" in text
    assert "2025-03-01 02:00:05 UTC" in text and "Failed" in text
    assert run_id in text  # the id column never truncates an id
    assert plain.command is None  # `phasegate approve` refuses a pause without a form
    assert f"run {plain.id}\n    no approval form: resume it from the Prefect UI" in text

    empty = Console(record=True, width=80, color_system=None)
    empty.print(status_table(StatusReport(environment="acme-dev")))
    text = empty.export_text()
    assert "no run in progress" in text and "Pending approvals: none" in text
    assert "No flow runs tagged phasegate-env:acme-dev" in text
