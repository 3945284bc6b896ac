"""Running one Step through its lifecycle against its ledger, with a log line per verb.

This is the engine under the generic Prefect tasks (tasks.runner): no Prefect here, so a step
can be exercised directly in tests and in `phasegate plan`. Errors are re-raised with the
environment and step named, so the user never has to guess which step of which environment
failed.

- `checkpoint()` decides whether a step can be skipped: the chain's checkpoint must hold in
  AWS. Settling is waited out (with the `settle` deadline); drift is appended to the chain
  with its diff and the step plans again from the present.
- `execute()` resumes a half-applied change from its journaled intent, or plans, checks the
  plan against the approved one, journals the intent, applies (journaling progress), waits
  for verify to hold and appends the applied Record.
- Each of them runs the step as the environment's executor does (`executed`): through the
  Terraform stack for a step that declares its decisions under `executor: terraform`.
- `undo()` walks the chain newest first back to the state from before phasegate first
  touched the step, half-applied changes included, and appends the rollback.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from phasegate import deadline
from phasegate.aws import recording_calls
from phasegate.errors import PhasegateError
from phasegate.ledger import Ledger
from phasegate.steps import (
    Change,
    PlanBlocked,
    PlanChanged,
    Record,
    Settling,
    Step,
    Verdict,
    VerificationFailed,
    flatten,
    utcnow,
)
from phasegate.terraform.executor import OUTSIDE_TERRAFORM, executed, outside_terraform
from phasegate.waiting import wait_until


class StepFailed(PhasegateError):
    """A step failed; the message names the environment, the step and the cause."""

    def __init__(self, environment: str, step: str, cause: BaseException) -> None:
        self.environment = environment
        self.step = step
        self.cause = cause
        # Bad input a step finds while planning (a hosted zone Route 53 does not have) is
        # still bad input: the cause's exit code (2), not a failed migration's.
        self.exit_code = getattr(cause, "exit_code", PhasegateError.exit_code)
        super().__init__(f"{environment}: step {step} failed: {cause}")

    def __reduce__(self) -> Any:
        return type(self), (self.environment, self.step, self.cause)


@contextmanager
def _bound(step: Step) -> Iterator[structlog.stdlib.BoundLogger]:
    with structlog.contextvars.bound_contextvars(
        environment=step.ctx.config.name, phase=step.phase, step=step.id
    ):
        try:
            yield structlog.get_logger("phasegate.lifecycle")
        except StepFailed:
            raise
        except PhasegateError as exc:
            raise StepFailed(step.ctx.config.name, step.id, exc) from exc


@contextmanager
def _within_timeout(step: Step) -> Iterator[None]:
    seconds = step.ctx.config.phases.step_timeout_seconds
    with deadline.step_deadline(seconds, f"{step.ctx.config.name}: step {step.id}"):
        yield


def plan(step: Step) -> Change | None:
    """observe -> plan, read-only: what `step` would change now."""
    step = executed(step)
    with _bound(step) as log:
        obs = step.observe()
        log.info("step.observed")
        change = step.plan(obs)
        if change is not None and change.actions and outside_terraform(step):
            change = change.model_copy(update={"actions": [*change.actions, OUTSIDE_TERRAFORM]})
        log.info(
            "step.planned",
            change=change.summary if change else None,
            monthly_cost_delta=change.monthly_cost_delta if change else 0.0,
        )
        return change


def condition(step: Step, record: Record) -> tuple[Verdict, VerificationFailed | Settling | None]:
    """Verify `record` once, read-only: holds, settling, or drifted (with the error saying how)."""
    try:
        step.verify(record)
    except Settling as exc:
        return "settling", exc
    except VerificationFailed as exc:
        return "drifted", exc
    return "holds", None


def settled(step: Step, record: Record) -> tuple[Verdict, VerificationFailed | None]:
    """Verify `record`, waiting out settling up to the `settle` deadline: holds or drifted.

    A deadline reached while AWS is still settling raises WaitTimeout naming the state.
    """
    limit = deadline.capped(step.ctx.config.phases.wait_timeout("settle"))
    verdict = wait_until(
        f"{step.id} to settle ({step.ctx.config.name})",
        lambda: condition(step, record),
        lambda found: found[0] != "settling",
        timeout=limit,
        max_overshoot=0.1,
    )
    if verdict[0] == "drifted":
        assert isinstance(verdict[1], VerificationFailed)
        return "drifted", verdict[1]
    return "holds", None


def _entry(step: Step, key: str, outcome: str, **fields: Any) -> Record:
    now = utcnow()
    return Record(
        environment=step.ctx.config.name,
        phase=step.phase,
        step=step.id,
        key=key,
        outcome=outcome,  # type: ignore[arg-type]
        target_hash=step.target_hash(),
        started_at=fields.pop("started_at", now),
        finished_at=now,
        **fields,
    )


def record_drift(step: Step, ledger: Ledger, of: Record, error: VerificationFailed) -> Record:
    """Append what AWS shows that `of` did not leave; logged, never dropped."""
    with _bound(step) as log:
        log.warning("step.drift", recorded=of.seq, detail=str(error), diff=error.diff)
        return ledger.append(
            _entry(step, of.key, "drift", diff=error.diff, detail=str(error), change=of.change)
        )


def checkpoint(step: Step, ledger: Ledger | None = None) -> Record | None:
    """The Record that lets a re-run skip `step`: the chain's checkpoint, if it holds in AWS.

    Settling is waited out. Drift is appended to the chain and None returned, so the step
    plans again from the present. A checkpoint made for another target (config changed) is
    still checked for drift, so a change by hand is reported, but is never a reason to skip.
    """
    ledger = ledger or Ledger(step.ctx.config)
    step = executed(step)
    with _bound(step), _within_timeout(step):
        record = ledger.checkpoint(step.phase, step.id)
        if record is None:
            return None
        same_target = record.target_hash == step.target_hash()
        if record.outcome == "unchanged" and not same_target:
            return None  # it recorded nothing to compare the present with
        verdict, error = settled(step, record)
        if verdict == "drifted":
            assert error is not None
            record_drift(step, ledger, record, error)
            return None
        return record if same_target else None


def execute(
    step: Step,
    key: str,
    ledger: Ledger | None = None,
    approved_digest: str | None = None,
    approver: str | None = None,
    comment: str | None = None,
) -> Record:
    """Resume or plan -> (check approval) -> journal intent -> apply -> verify -> applied.

    A change journaled under the chain and never finished is resumed (apply is idempotent)
    instead of planning from the half-changed present, so the ledger keeps the true
    before-state. A fresh plan that differs from `approved_digest` (the plan the operator
    approved) raises PlanChanged before anything changes. Who approved, and what they said,
    go into the Records.
    """
    started = utcnow()
    ledger = ledger or Ledger(step.ctx.config)
    step = executed(step)
    with _bound(step) as log, _within_timeout(step), recording_calls() as calls:
        earlier = ledger.open_intent(step.phase, step.id)
        if earlier is not None and earlier.change is not None:
            change: Change | None = earlier.change
            log.info("step.resumed", reason="a previous run journaled this change", seq=earlier.seq)
            ledger.append(
                _entry(step, key, "intent", change=change, detail="resumed", approver=approver)
            )
        else:
            change = plan(step)
            if change is not None and change.blockers:
                raise PlanBlocked.of(step.ctx.config.name, change)
            if change is not None and change.actions and approved_digest is not None:
                check_approved(step, change, approved_digest)
            if change is not None:
                ledger.append(
                    _entry(step, key, "intent", change=change, approver=approver, comment=comment)
                )
        if change is None:
            record = _entry(step, key, "unchanged", started_at=started)
        else:
            step._on_progress = lambda done: ledger.append(
                _entry(step, key, "progress", after=done)
            )
            try:
                after = step.apply(change)
            finally:
                step._on_progress = None
            record = _entry(
                step, key, "applied", change=change, before=change.before, after=after,
                started_at=started,
            )  # fmt: skip
            log.info("step.applied", actions=change.actions)
        verdict, error = settled(step, record)
        if verdict == "drifted":
            assert error is not None
            raise VerificationFailed(f"after apply: {error}", error.diff)
        log.info("step.verified", outcome=record.outcome)
        record = record.model_copy(
            update={
                "finished_at": utcnow(),
                "api_actions": list(dict.fromkeys(calls)),
                "approver": approver,
                "comment": comment or None,
            }
        )
        return ledger.append(record)


def check_approved(step: Step, change: Change, approved_digest: str) -> None:
    """Raise PlanChanged unless `change` is the change the operator approved."""
    if change.digest() != approved_digest:
        raise PlanChanged(
            f"{step.ctx.config.name}: {step.id}: the change differs from the approved plan "
            f"(approved {approved_digest}, now {change.digest()}: {change.summary}); "
            "nothing was changed, approve the new plan"
        )


def plan_difference(approved: Change, now: Change | None) -> list[str]:
    """What differs between an approved change and the change planned now, field by field."""
    if now is None:
        return ["nothing to change any more"]
    found: list[str] = []
    for part in ("before", "desired"):
        old = flatten(getattr(approved, part))
        new = flatten(getattr(now, part))
        for field in sorted(set(old) | set(new)):
            if old.get(field) != new.get(field):
                found.append(
                    f"{part}.{field}: approved {old.get(field, '(absent)')!r}, "
                    f"now {new.get(field, '(absent)')!r}"
                )
    return found


def undo(step: Step, ledger: Ledger | None = None) -> str:
    """Roll `step` back to before phasegate first touched it; what happened, in words.

    Walks the chain's undo units newest first (the step may merge them, `Step.coalesce`),
    rolls each back and verifies it, then appends the rollback to the chain.
    """
    ledger = ledger or Ledger(step.ctx.config)
    step = executed(step)
    with _bound(step) as log, _within_timeout(step):
        units = ledger.undo_units(step.phase, step.id)
        if not units:
            chain = ledger.chain(step.phase, step.id)
            log.info("step.rollback_skipped", reason="nothing applied since the last rollback")
            return "nothing to undo" if chain else "not applied"
        for record in step.coalesce(units):
            step.rollback(record)
            log.info("step.rolled_back", seq=record.seq, outcome=record.outcome)
            step.verify_rollback(record)
            log.info("step.rollback_verified", seq=record.seq)
        half = any(u.outcome == "intent" for u in units)
        detail = f"undid {len(units)} change(s)" + (" (one half-applied)" if half else "")
        template = _entry(step, units[0].key, "rolled_back")
        ledger.rolled_back(template, units, detail)
    return "rolled back"
