"""The running step's deadline: a step timeout that really interrupts.

Prefect cannot interrupt a task running in a worker thread (its task timeout only warns), so
the step's own timeout is enforced here, cooperatively: the lifecycle sets a deadline for the
step, every wait is capped by it, and every AWS call checks it first (phasegate.aws). A step
past its deadline therefore stops at its next call or poll with a StepTimeout naming it,
instead of running on behind a timed-out task.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from phasegate.errors import WaitTimeout


class StepTimeout(WaitTimeout):
    """The step ran past `phases.step_timeout_seconds`; raised at its next AWS call or poll."""


_deadline: ContextVar[tuple[float, str] | None] = ContextVar("phasegate_deadline", default=None)


@contextmanager
def step_deadline(seconds: float, what: str) -> Iterator[None]:
    """Everything inside must finish within `seconds`; `what` names the step and environment."""
    token = _deadline.set((time.monotonic() + seconds, f"{what} ran past its {seconds:g}s timeout"))
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left before the running step's deadline; None outside a step."""
    current = _deadline.get()
    return None if current is None else current[0] - time.monotonic()


def check(doing: str | None = None) -> None:
    """Raise StepTimeout when the running step is past its deadline; `doing` names what it
    was about to do (an AWS call and its resource), so the error says where it stopped."""
    current = _deadline.get()
    if current is not None and time.monotonic() > current[0]:
        raise StepTimeout(current[1] + (f", before {doing}" if doing else ""))


def capped(timeout: float, doing: str | None = None) -> float:
    """`timeout`, or less when the running step's deadline comes first (never below 0);
    StepTimeout (naming `doing`) when that deadline has passed already."""
    check(doing)
    left = remaining()
    return timeout if left is None else max(0.0, min(timeout, left))
