"""Approvals: tier policy, the approval form's text, and pause/resume on a real Prefect API.

The flow tests run a small flow in a background thread that asks for approval of a plan built
from real Changes, wait (through the API) until the run is Paused, and then answer it the way
an operator does: `phasegate approve` (the CLI), or not at all.
"""

import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import pytest
from flowruns import FlowThread, stop_all
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.flow_runs import resume_flow_run
from prefect.runtime import flow_run as current_run
from typer.testing import CliRunner

from phasegate.approvals import (
    ApprovalExpired,
    ApprovalPolicy,
    ApprovalRejected,
    check_auto_approve_allowed,
    describe,
    extra_approval_steps,
    needs_approval,
)
from phasegate.cli import app
from phasegate.config import EnvironmentConfig
from phasegate.errors import ConfigError
from phasegate.steps import Change, Record, Reversibility, utcnow
from tasks.approvals import Approval, artifact_key, request_approval, resume_with

POLL = 0.2  # seconds between the paused flow's checks for an answer

CHANGES: list[tuple[str, Change | None]] = [
    ("nat.assess", None),
    (
        "nat.remove",
        Change(
            step="nat.remove",
            summary="Remove 2 NAT gateways | move 1 service to public subnets",
            actions=[
                "ecs:UpdateService demo-cluster/web assignPublicIp=ENABLED",
                "ec2:CreateVpcEndpoint com.amazonaws.us-east-1.s3",
                "ec2:DeleteNatGateway nat-0a1, nat-0b2",
            ],
            monthly_cost_delta=-92.34,
            reversibility=Reversibility(
                restart_needed=True,
                rollback_possible=True,
                expected_disruption="rolling replacement of tasks; no downtime behind the ALB",
            ),
        ),
    ),
    (
        "database.resize",
        Change(
            step="database.resize",
            summary="RDS demo-db db.t3.micro -> db.t4g.micro",
            actions=["rds:CreateDBSnapshot demo-db", "rds:ModifyDBInstance demo-db"],
            monthly_cost_delta=-1.46,
            reversibility=Reversibility(
                restart_needed=True,
                rollback_possible=False,
                expected_disruption="a few minutes of database downtime",
            ),
        ),
    ),
]


def environment(tier: str = "dev", **approvals: Any) -> EnvironmentConfig:
    return EnvironmentConfig(
        name=f"acme-{tier}",
        tier=tier,
        discovery={"tags": {"Environment": f"acme-{tier}"}},
        approvals=approvals,
    )


# --- policy -------------------------------------------------------------------------------


def test_dev_auto_approves_by_default() -> None:
    assert needs_approval(environment("dev"), 1, False) is False
    assert needs_approval(environment("dev"), 2, True) is False


def test_dev_asks_when_config_says_so_and_refuses_the_flag_then() -> None:
    config = environment("dev", auto_approve=False)
    assert needs_approval(config, 1, False) is True
    with pytest.raises(ConfigError, match=r"acme-dev: --auto-approve is refused.*false"):
        needs_approval(config, 1, True)


def test_staging_asks_per_phase_and_refuses_the_flag_unless_config_opts_in() -> None:
    config = environment("staging")
    assert [needs_approval(config, phase, False) for phase in (1, 2, 3)] == [True] * 3
    with pytest.raises(ConfigError, match=r"acme-staging: .*auto_approve: true"):
        needs_approval(config, 1, True)
    opted_in = environment("staging", auto_approve=True)
    assert needs_approval(opted_in, 1, True) is False
    assert needs_approval(opted_in, 1, False) is False


def test_prod_refuses_auto_approve_with_exit_code_2_naming_the_environment() -> None:
    config = environment("prod")
    with pytest.raises(ConfigError) as caught:
        check_auto_approve_allowed(config, True)
    assert caught.value.exit_code == 2
    assert "acme-prod" in str(caught.value) and "prod" in str(caught.value)
    with pytest.raises(ConfigError):
        needs_approval(config, 1, True)
    check_auto_approve_allowed(config, False)  # no flag, no complaint


def test_prod_asks_per_phase_and_again_before_nat_remove() -> None:
    config = environment("prod")
    assert all(needs_approval(config, phase, False) for phase in (1, 2, 3))
    assert extra_approval_steps(config) == {"nat.remove"}
    policy = ApprovalPolicy.for_run(config)
    assert policy.needs_step_approval("nat.remove")
    assert not policy.needs_step_approval("database.resize")
    assert extra_approval_steps(environment("staging")) == set()
    assert extra_approval_steps(environment("dev")) == set()


def test_unknown_phase_is_bad_input() -> None:
    with pytest.raises(ConfigError, match="phase 4"):
        needs_approval(environment("prod"), 4, False)


# --- the form's text ----------------------------------------------------------------------


def test_description_lists_each_change_with_cost_delta_and_reversibility() -> None:
    md = describe(environment("prod"), 1, CHANGES)
    assert "acme-prod" in md and "**Tier:** prod" in md
    assert "-$92.34" in md and "-$1.46" in md
    assert "**Total monthly cost delta:** -$93.80 / month" in md
    # one table row per step, with restart, rollback and disruption
    nat_row = next(line for line in md.splitlines() if line.startswith("| `nat.remove`"))
    assert "Remove 2 NAT gateways \\| move" in nat_row  # a pipe cannot break the table
    assert "| -$92.34 | yes | yes | rolling replacement of tasks" in nat_row
    db_row = next(line for line in md.splitlines() if line.startswith("| `database.resize`"))
    assert "| -$1.46 | yes | no | a few minutes of database downtime |" in db_row
    assert "| `nat.assess` | nothing to do | $0.00 |" in md
    assert "ec2:DeleteNatGateway nat-0a1, nat-0b2" in md  # the actions, under each change
    step_md = describe(environment("prod"), 1, CHANGES[1:2], step="nat.remove")
    assert "step `nat.remove` of phase 1" in step_md and "second approval" in step_md


def test_artifact_key_is_a_valid_prefect_key() -> None:
    assert artifact_key("Acme_Prod", 1, "nat.remove") == "approval-acme-prod-phase-1-nat-remove"


def test_approval_requires_an_approver_and_stamps_records() -> None:
    with pytest.raises(ValueError):
        Approval(approved=True, approver="  ")
    approval = Approval(approved=True, approver=" alice ", comment="go")
    record = Record(
        environment="acme-prod", phase=1, step="nat.remove", key="k", outcome="applied",
        started_at=utcnow(), finished_at=utcnow(),
    )  # fmt: skip
    stamped = approval.stamp(record)
    assert (stamped.approver, stamped.comment) == ("alice", "go")


# --- pause and resume on the real API -----------------------------------------------------


AFTER_APPROVAL: list[str] = []  # labels of flow runs that got past their approval point
RUN_IDS: dict[str, UUID] = {}


@flow(name="approval-test", flow_run_name="approval test {label}")
def gated(config: EnvironmentConfig, label: str) -> dict[str, str]:
    RUN_IDS[label] = UUID(current_run.id)
    approval = request_approval(config, 1, CHANGES, poll_interval=POLL)
    AFTER_APPROVAL.append(label)
    return {"approver": approval.approver, "comment": approval.comment, "then": "continued"}


# retries=2: on Prefect 3.9.1 a resume counts as a run (run_count 1 -> 2), so one pause and
# answer use up one retry.
@flow(name="approval-test-retried", flow_run_name="approval test {label}", retries=2)
def gated_retried(config: EnvironmentConfig, label: str) -> dict[str, str]:
    RUN_IDS[label] = UUID(current_run.id)
    approval = request_approval(config, 1, CHANGES, step="nat.remove", poll_interval=POLL)
    AFTER_APPROVAL.append(label)
    return {"approver": approval.approver, "then": "continued"}


@pytest.fixture
def background(prefect_client_env: str) -> Iterator[Any]:
    started: list[FlowThread] = []

    def start(target: Any, config: EnvironmentConfig) -> FlowThread:
        label = uuid4().hex[:8]
        started.append(FlowThread(lambda: target(config, label), lambda: RUN_IDS.get(label), label))
        return started[-1]

    yield start
    stop_all(started, lambda run_id: resume_with(run_id, False, "test-teardown"))


def approve(*args: str) -> Any:
    return CliRunner().invoke(app, ["approve", *args])


def test_approve_from_the_cli_resumes_the_flow_with_approver_and_comment(
    background: Any,
) -> None:
    config = environment("staging", timeout_seconds=60)
    bg = background(gated, config)
    run_id = bg.wait_paused()
    assert bg.label not in AFTER_APPROVAL  # paused before the change

    with get_client(sync_client=True) as client:  # the plan is published as an artifact
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[artifact_key(config.name, 1)])
            ),
            limit=1,
        )
    assert "-$92.34" in str(artifact.data) and "rollback possible" in str(artifact.data)

    empty = approve(str(run_id), "--approver", "  ")
    assert empty.exit_code == 2, empty.output
    # The form's schema on the server refuses an empty approver too (the UI's path).
    with pytest.raises(RuntimeError, match="approver"):
        resume_flow_run(run_id, run_input={"approved": True, "approver": ""})
    assert bg.read().state.is_paused()  # a bad answer leaves the run waiting

    result = approve(str(run_id), "--approver", "alice", "--comment", "window ok")
    assert result.exit_code == 0, result.output
    assert "approved" in result.output and str(run_id) in result.output
    bg.join()
    assert bg.error is None
    assert bg.result == {"approver": "alice", "comment": "window ok", "then": "continued"}
    assert bg.label in AFTER_APPROVAL
    assert bg.read().state.is_completed()

    again = approve(str(run_id), "--approver", "alice")  # nothing waits any more
    assert again.exit_code == 2
    assert str(run_id) in again.stderr and "not waiting for approval" in again.stderr


def test_reject_stops_the_flow_before_the_change(background: Any) -> None:
    bg = background(gated, environment("prod", timeout_seconds=60))
    run_id = bg.wait_paused()
    result = approve(str(run_id), "--approver", "bob", "--reject", "--comment", "not tonight")
    assert result.exit_code == 0, result.output
    assert "rejected" in result.output
    bg.join()
    assert isinstance(bg.error, ApprovalRejected)
    assert str(bg.error) == (
        "acme-prod: phase 1 rejected by bob: 'not tonight'; stopped, nothing more changed"
    )
    assert bg.error.exit_code == 1
    assert bg.label not in AFTER_APPROVAL
    assert bg.read().state.is_failed()


def test_no_answer_in_time_expires_and_stops_the_flow(background: Any) -> None:
    bg = background(gated, environment("staging", timeout_seconds=2))
    run_id = bg.wait_paused()
    bg.join()
    assert isinstance(bg.error, ApprovalExpired)
    assert str(bg.error) == (
        "acme-staging: phase 1: no approval within 2 s; stopped, nothing more changed"
    )
    assert bg.label not in AFTER_APPROVAL
    assert bg.read().state.is_failed()
    late = approve(str(run_id), "--approver", "alice")  # too late: exit 2, names the run
    assert late.exit_code == 2
    assert str(run_id) in late.stderr


def test_a_retried_run_asks_again_instead_of_reusing_the_rejection(background: Any) -> None:
    bg = background(gated_retried, environment("prod", timeout_seconds=60))
    run_id = bg.wait_paused()
    assert approve(str(run_id), "--approver", "bob", "--reject").exit_code == 0
    deadline = time.monotonic() + 60  # the rejected attempt fails, the retry pauses anew
    while not (bg.read().run_count > 2 and bg.read().state.is_paused()):
        assert time.monotonic() < deadline, f"no second pause; run is {bg.read().state}"
        assert bg.thread.is_alive(), f"no retry: {bg.error!r}"
        time.sleep(0.1)
    assert bg.label not in AFTER_APPROVAL
    result = approve(str(run_id), "--approver", "carol")
    assert result.exit_code == 0, result.output
    bg.join()
    assert bg.error is None, bg.error
    assert bg.result == {"approver": "carol", "then": "continued"}


def test_an_expired_approval_is_final_even_for_a_flow_with_retries(background: Any) -> None:
    bg = background(gated_retried, environment("prod", timeout_seconds=1))
    bg.wait_paused()
    bg.join()
    assert isinstance(bg.error, ApprovalExpired)
    assert "step nat.remove: no approval within 1 s" in str(bg.error)
    run = bg.read()
    assert run.state.is_failed() and run.run_count == 1  # Prefect did not retry it
    assert bg.label not in AFTER_APPROVAL


@pytest.mark.usefixtures("prefect_client_env")
def test_approve_unknown_or_malformed_run_id_is_bad_input() -> None:
    unknown = str(uuid4())
    result = approve(unknown, "--approver", "alice")
    assert result.exit_code == 2
    assert f"flow run {unknown} not found" in result.stderr
    malformed = approve("not-a-run", "--approver", "alice")
    assert malformed.exit_code == 2
    assert "'not-a-run' is not a flow run id" in malformed.stderr
    missing = approve(unknown)  # --approver is required
    assert missing.exit_code == 2
