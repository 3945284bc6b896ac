"""Waiting for AWS to reach a state: poll with backoff until it does or a deadline passes.

RDS and ElastiCache changes take many minutes on AWS, so waits are normal; a wait that
reaches its deadline raises WaitTimeout naming what it waited for, and never hangs.
"""

import time
from collections.abc import Callable
from typing import TypeVar

from phasegate.errors import WaitTimeout

T = TypeVar("T")


def wait_until(
    what: str,
    probe: Callable[[], T],
    done: Callable[[T], bool],
    timeout: float,
    first_delay: float = 0.5,
    max_delay: float = 30.0,
    factor: float = 1.6,
    sleep: Callable[[float], None] = time.sleep,
    max_overshoot: float | None = None,
) -> T:
    """Call `probe` until `done(result)`; return that result, or raise WaitTimeout after `timeout`.

    `what` names the resource and the awaited state, e.g. "RDS acme-db available".
    `max_overshoot` (e.g. 0.1) keeps each delay within that share of the time waited so far,
    so a wait ends at most about 10% after its state arrived: backoff alone can sleep past a
    4-minute resize by 60%, which is what a phase's wall time would pay on its critical path.
    """
    started = time.monotonic()
    deadline = started + timeout
    delay = min(first_delay, max_delay)
    last: T | None = None
    while True:
        last = probe()
        if done(last):
            return last
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(
                f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last}"
            )
        sleep(min(delay, remaining))
        delay = min(delay * factor, max_delay)
        if max_overshoot is not None:
            waited = time.monotonic() - started
            delay = min(delay, max(first_delay, max_overshoot * waited))
