"""Running one Step through its lifecycle, with a structured log line per verb.

This is the engine under the generic Prefect task (tasks.runner): no Prefect here, so a
step can be exercised directly in tests and in `phasegate plan`. Errors are re-raised with
the environment and step named, so the user never has to guess which step of which
environment failed.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import structlog

from phasegate.aws import recording_calls
from phasegate.errors import PhasegateError
from phasegate.steps import Change, Record, Step, VerificationFailed, utcnow


class StepFailed(PhasegateError):
    """A step failed; the message names the environment, the step and the cause."""

    def __init__(self, environment: str, step: str, cause: BaseException) -> None:
        self.environment = environment
        self.step = step
        self.cause = cause
        super().__init__(f"{environment}: step {step} failed: {cause}")


class Journal(Protocol):
    """Where a change is written down before it is applied (phasegate.checkpoints)."""

    def save_intent(self, key: str, change: Change) -> None: ...

    def intent(self, key: str) -> Change | None: ...


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


def plan(step: Step) -> Change | None:
    """observe -> plan, read-only: what `step` would change now."""
    with _bound(step) as log:
        obs = step.observe()
        log.info("step.observed")
        change = step.plan(obs)
        log.info(
            "step.planned",
            change=change.summary if change else None,
            monthly_cost_delta=change.monthly_cost_delta if change else 0.0,
        )
        return change


def execute(step: Step, key: str, journal: Journal | None = None) -> Record:
    """observe -> plan -> apply -> verify; the Record is the checkpoint and rollback entry.

    With a journal, the change is written down before apply. A run that finds a change
    journaled under its key resumes that change (apply is idempotent) instead of planning
    from the half-changed present, so the Record keeps the true before-state even when the
    previous run died mid-apply.
    """
    started = utcnow()
    with _bound(step) as log, recording_calls() as calls:
        change = plan(step)
        earlier = journal.intent(key) if journal else None
        if earlier is not None:
            log.info("step.resumed", reason="a previous run journaled this change")
            change = earlier
        elif change is not None and journal is not None:
            journal.save_intent(key, change)
        record = Record(
            environment=step.ctx.config.name,
            phase=step.phase,
            step=step.id,
            key=key,
            outcome="unchanged",
            started_at=started,
            finished_at=started,
        )
        if change is not None:
            after = step.apply(change)
            record = record.model_copy(
                update={
                    "outcome": "applied",
                    "change": change,
                    "before": change.before,
                    "after": after,
                }
            )
            log.info("step.applied", actions=change.actions)
        step.verify(record)
        log.info("step.verified", outcome=record.outcome)
    return record.model_copy(
        update={"finished_at": utcnow(), "api_actions": list(dict.fromkeys(calls))}
    )


def still_holds(step: Step, record: Record) -> bool:
    """Re-verify a checkpointed Record against AWS (read-only); False means drift."""
    with _bound(step) as log:
        try:
            step.verify(record)
        except VerificationFailed as exc:
            log.warning("step.drift", detail=str(exc))
            return False
        return True


def undo(step: Step, record: Record) -> None:
    """rollback -> verify_rollback from a Record."""
    with _bound(step) as log:
        if record.outcome == "unchanged":
            log.info("step.rollback_skipped", reason="the step changed nothing")
            return
        step.rollback(record)
        log.info("step.rolled_back")
        step.verify_rollback(record)
        log.info("step.rollback_verified")
