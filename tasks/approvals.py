"""Approvals on Prefect: pause a flow run for the operator's answer, and resume it with one.

`request_approval` is called from inside a flow, before a phase (or a step) changes anything.
It publishes the plan as a markdown artifact, then pauses the flow run with
`pause_flow_run(wait_for_input=Approval...)`: the Prefect UI shows a Resume form with the plan
on top, and `phasegate approve RUN_ID` (`resume_with`) answers from a terminal. Approved: the
Approval comes back (its approver and comment go into the Records, `Approval.stamp`).
Rejected: ApprovalRejected. No answer within `approvals.timeout_seconds`: ApprovalExpired.
Either way the flow raises before the next change, so the run ends Failed having changed
nothing more.

A run started from a deployment (by a worker, or `phasegate serve`) is suspended instead
(`suspend_flow_run`): its process exits while it waits, so it holds no worker slot and no
environment lock (the lock's `with` unwinds and releases the slot). The answer resumes it: the
worker starts the flow again from the top, finished steps come back Cached from their
checkpoints, and this same call, with the same key, returns the stored answer instead of asking
again. That needs a description that does not change between the two runs (it is built from
the plan only). A suspended run whose timeout passes is marked Failed by the Prefect server
("The flow was paused and never resumed"); a later `phasegate approve` is refused.

Measured on Prefect 3.9.1: on timeout `pause_flow_run` raises
`prefect.exceptions.FlowPauseTimeout`; a resume arriving after the server-side pause deadline
is refused, so a late `phasegate approve` cannot resume a run that has given up, and Prefect
does not retry a run whose pause expired, whatever the flow's `retries`. A flow retry after a
rejection asks again (the server forgets a run's pause keys when it retries it). Note that a
resume counts as a run: a flow with `retries=N` that pauses once has N-1 retries left.
"""

import hashlib
import math
import re
from uuid import UUID

import httpx
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout, NotPausedError, ObjectNotFound
from prefect.flow_runs import pause_flow_run, resume_flow_run, suspend_flow_run
from prefect.input import RunInput
from pydantic import Field, ValidationError, field_validator

from phasegate.approvals import (
    ApprovalExpired,
    ApprovalPolicy,
    ApprovalRejected,
    PlannedChanges,
    describe,
    stamp,
    total_delta,
)
from phasegate.config import EnvironmentConfig
from phasegate.errors import ConfigError, PhasegateError
from phasegate.logs import get_logger
from phasegate.steps import Record

DEFAULT_POLL_SECONDS = 5.0


class Approval(RunInput):
    """The operator's answer; the fields of the Prefect UI's Resume form."""

    approved: bool = Field(description="Tick to approve; leave unticked to reject")
    approver: str = Field(min_length=1, pattern=r"\S", description="Who answers (required)")
    comment: str = Field(default="", description="Why; kept in the run's Records")

    @field_validator("approver", "comment")
    @classmethod
    def _tidy(cls, value: str) -> str:
        return value.strip()

    def stamp(self, record: Record) -> Record:
        """`record` carrying this approval's approver and comment."""
        return stamp(record, self.approver, self.comment)


def slug(text: str) -> str:
    """`text` as a Prefect key: lowercase letters, digits and single dashes."""
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")


def artifact_key(environment: str, phase: int, step: str | None = None) -> str:
    """e.g. 'approval-acme-prod-phase-1' or 'approval-acme-prod-phase-1-nat-remove'."""
    return slug(f"approval-{environment}-phase-{phase}" + (f"-{step}" if step else ""))


def pause_key(phase: int, step: str | None, description: str) -> str:
    """Unique per phase/step and plan, stable across re-runs of the same plan.

    Prefect never pauses twice on one key in a run attempt: a repeated key returns the answer
    already given (which is what lets a suspended flow, re-run from the top, go on). The
    plan's digest makes a changed plan ask again.
    """
    digest = hashlib.sha256(description.encode()).hexdigest()[:8]
    return slug(f"approval-phase-{phase}-{step or 'all'}-{digest}")


def approval_description(
    config: EnvironmentConfig,
    phase: int,
    changes: PlannedChanges,
    *,
    step: str | None = None,
    note: str | None = None,
) -> str:
    """The Resume form's description: see phasegate.approvals.describe."""
    return describe(config, phase, changes, step=step, note=note)


def approved_digests(changes: PlannedChanges) -> dict[str, str]:
    """Step id -> digest of the approved change, for each step that changes something: what
    a step checks its change against right before it applies it."""
    return {step: change.digest() for step, change in changes if change and change.actions}


def request_approval(
    config: EnvironmentConfig,
    phase: int,
    changes: PlannedChanges,
    *,
    step: str | None = None,
    poll_interval: float = DEFAULT_POLL_SECONDS,
    timeout_seconds: float | None = None,
    note: str | None = None,
) -> Approval:
    """Pause the calling flow run until an operator answers; the approval if they approve.

    Raises ApprovalRejected if they reject, ApprovalExpired if nobody answers within
    `timeout_seconds` (default `config.approvals.timeout_seconds`; the migration passes less
    when its maintenance window closes sooner). Must be called from inside a flow run.
    """
    return ask_operator(
        config,
        phase,
        approval_description(config, phase, changes, step=step, note=note),
        step=step,
        subject=f"Plan awaiting approval: {config.name} phase {phase}"
        + (f" step {step}" if step else ""),
        poll_interval=poll_interval,
        timeout_seconds=timeout_seconds,
        monthly_cost_delta=total_delta(changes),
    )


def ask_operator(
    config: EnvironmentConfig,
    phase: int,
    description: str,
    *,
    step: str | None,
    subject: str,
    poll_interval: float = DEFAULT_POLL_SECONDS,
    timeout_seconds: float | None = None,
    key: str | None = None,
    **log_context: object,
) -> Approval:
    """Publish `description`, then wait for the operator's Approval on the Resume form.

    The one way phasegate asks a person anything: a plan before it is applied, or what to do
    with a phase whose health gate failed. Rejected: ApprovalRejected; no answer in time:
    ApprovalExpired. `key` names the question within the run (default: per phase, step and
    description); a suspended run re-run from the top gets the stored answer back under it.
    """
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("ask_operator must be called from inside a Prefect flow run")
    run = context.flow_run
    key = slug(key) if key else pause_key(phase, step, description)
    wanted = config.approvals.timeout_seconds if timeout_seconds is None else timeout_seconds
    timeout = max(1, math.ceil(wanted))
    log = get_logger("approvals", environment=config.name, phase=phase, step=step)

    create_markdown_artifact(
        markdown=description, key=artifact_key(config.name, phase, step), description=subject
    )
    log.info(
        "approval.requested",
        flow_run_id=str(run.id),
        tier=config.tier,
        timeout_seconds=timeout,
        answer_with=f"phasegate approve {run.id} --approver NAME [--reject] [--comment TEXT]",
        **log_context,
    )
    form = Approval.with_initial_data(description=description, approved=False)
    # No approver="" here: an initial value replaces the field, and with it the non-empty
    # constraint, in the form's schema (measured), so an empty approver would be accepted.
    try:
        if run.deployment_id is not None:  # no worker slot held while waiting; see above
            answer = suspend_flow_run(wait_for_input=form, timeout=timeout, key=key)
        else:
            answer = pause_flow_run(
                wait_for_input=form, timeout=timeout, poll_interval=poll_interval, key=key
            )
    except FlowPauseTimeout:
        log.warning("approval.expired", timeout_seconds=timeout)
        raise ApprovalExpired(config.name, phase, timeout, step) from None
    except ValidationError as exc:  # resumed without (valid) input: never treat as approval
        raise PhasegateError(
            f"{config.name}: phase {phase}: the approval of flow run {run.id} came back "
            f"without a valid answer ({exc.error_count()} problem(s)); stopped, nothing more "
            "changed"
        ) from None
    approval = Approval(approved=answer.approved, approver=answer.approver, comment=answer.comment)
    if not approval.approved:
        log.warning("approval.rejected", approver=approval.approver, comment=approval.comment)
        raise ApprovalRejected(config.name, phase, approval.approver, approval.comment, step)
    log.info("approval.granted", approver=approval.approver, comment=approval.comment)
    return approval


def approval_gate(
    config: EnvironmentConfig,
    phase: int,
    changes: PlannedChanges,
    *,
    auto_approve_flag: bool = False,
    step: str | None = None,
    poll_interval: float = DEFAULT_POLL_SECONDS,
    timeout_seconds: float | None = None,
    note: str | None = None,
) -> Approval:
    """Apply the tier policy: auto-approve where it allows, else `request_approval`.

    `note` is put at the top of the form (the plan changed since the last approval: how).

    With `step`, only asks if the policy wants that step approved on its own (prod:
    nat.remove); otherwise returns at once. ConfigError if the flag is not allowed.
    """
    policy = ApprovalPolicy.for_run(config, auto_approve_flag)
    needed = policy.needs_step_approval(step) if step else policy.needs_approval(phase)
    if needed:
        return request_approval(
            config, phase, changes, step=step, poll_interval=poll_interval,
            timeout_seconds=timeout_seconds, note=note,
        )  # fmt: skip
    why = f"{config.tier} policy" if not step else f"{config.tier} asks no extra approval"
    get_logger("approvals", environment=config.name, phase=phase, step=step).info(
        "approval.automatic", reason=why
    )
    return Approval(approved=True, approver="phasegate", comment=f"auto-approved ({why})")


def _flow_run_id(run_id: str | UUID) -> UUID:
    if isinstance(run_id, UUID):
        return run_id
    try:
        return UUID(str(run_id).strip())
    except ValueError:
        raise ConfigError(
            f"{run_id!r} is not a flow run id (expected a UUID such as "
            "'0a1b2c3d-0000-4000-8000-000000000000', shown in the Prefect UI and in the run's "
            "log line 'approval.requested')"
        ) from None


def resume_with(run_id: str | UUID, approved: bool, approver: str, comment: str = "") -> str:
    """Answer the approval a flow run is paused on; the run's name.

    Raises ConfigError (exit 2) naming the run when the id is malformed or unknown, the run is
    not paused for an approval (any more), or the answer is invalid; PhasegateError when the
    Prefect API cannot be reached.
    """
    flow_run_id = _flow_run_id(run_id)
    try:
        answer = Approval(approved=approved, approver=approver, comment=comment)
    except ValidationError:
        raise ConfigError(
            f"flow run {flow_run_id}: --approver must name who answers (it is empty)"
        ) from None
    try:
        with get_client(sync_client=True) as client:
            api = client.api_url
            try:
                run = client.read_flow_run(flow_run_id)
            except ObjectNotFound:
                raise ConfigError(f"flow run {flow_run_id} not found at {api}") from None
            state = run.state
            if state is None or not state.is_paused():
                now = state.name if state else "without a state"
                raise ConfigError(
                    f"flow run {flow_run_id} ({run.name}) is not waiting for approval: it is {now}"
                )
            if not state.state_details.run_input_keyset:
                raise ConfigError(
                    f"flow run {flow_run_id} ({run.name}) is paused but not for an approval "
                    "(it asks for no input); resume it from the Prefect UI"
                )
        try:
            resume_flow_run(flow_run_id, run_input=answer.model_dump(mode="json"))
        except NotPausedError:
            raise ConfigError(
                f"flow run {flow_run_id} ({run.name}) is not waiting for approval any more"
            ) from None
        except FlowPauseTimeout:
            raise ConfigError(
                f"flow run {flow_run_id} ({run.name}) can no longer be approved: its approval "
                "timed out and the run stopped"
            ) from None
        except RuntimeError as exc:  # the server refused the input or the transition
            raise ConfigError(
                f"flow run {flow_run_id} ({run.name}) refused the answer: {exc}"
            ) from None
    except httpx.HTTPError as exc:
        raise PhasegateError(
            f"flow run {flow_run_id}: cannot reach the Prefect API: {exc}"
        ) from None
    return run.name
