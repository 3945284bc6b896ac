"""wait_until: returns when done, backs off by its factor up to a cap, and a deadline is an error.

Delays are checked by recording the sleep arguments (a fake sleep); deadlines with real short
sleeps, asserting only generous time bounds.
"""

import time
from collections.abc import Callable, Iterator
from itertools import pairwise
from typing import Any

import pytest

from phasegate.aws import AwsClients
from phasegate.config import AwsSettings
from phasegate.errors import AwsCallError, PhasegateError, WaitTimeout
from phasegate.waiting import wait_until


def states(*values: str) -> Callable[[], str]:
    """A probe returning `values` in turn, then the last one forever; counts its calls."""
    seq: Iterator[str] = iter(values)
    last = values[-1]

    def probe() -> str:
        nonlocal last
        probe.calls += 1  # type: ignore[attr-defined]
        last = next(seq, last)
        return last

    probe.calls = 0  # type: ignore[attr-defined]
    return probe


class Sleeps(list[float]):
    """A fake sleep that records its arguments (and optionally really sleeps, briefly)."""

    def __init__(self, real: bool = False) -> None:
        super().__init__()
        self.real = real

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        if self.real:
            time.sleep(seconds)


def test_returns_the_done_result_at_once_without_sleeping() -> None:
    sleeps = Sleeps()
    assert (
        wait_until("x ready", states("ready"), lambda s: s == "ready", 10, sleep=sleeps) == "ready"
    )
    assert sleeps == []


def test_polls_until_done_and_returns_that_result() -> None:
    probe, sleeps = states("creating", "modifying", "available"), Sleeps()
    result = wait_until(
        "RDS acme-db available", probe, lambda s: s == "available", 60, sleep=sleeps
    )
    assert result == "available"
    assert probe.calls == 3  # type: ignore[attr-defined]
    assert len(sleeps) == 2


def test_delays_grow_by_the_factor_and_are_capped() -> None:
    probe, sleeps = states(*["pending"] * 7, "done"), Sleeps()
    wait_until(
        "x done",
        probe,
        lambda s: s == "done",
        timeout=3600,
        first_delay=1.0,
        factor=2.0,
        max_delay=5.0,
        sleep=sleeps,
    )
    assert sleeps == pytest.approx([1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0])


def test_default_backoff() -> None:
    probe, sleeps = states(*["pending"] * 12, "done"), Sleeps()
    wait_until("x done", probe, lambda s: s == "done", timeout=3600, sleep=sleeps)
    expected = [min(0.5 * 1.6**i, 30.0) for i in range(12)]
    assert sleeps == pytest.approx(expected)
    assert max(sleeps) == 30.0
    assert all(b >= a for a, b in pairwise(sleeps))


def test_a_first_delay_above_the_cap_is_capped_too() -> None:
    probe, sleeps = states("pending", "pending", "done"), Sleeps()
    wait_until(
        "x done",
        probe,
        lambda s: s == "done",
        timeout=3600,
        first_delay=60.0,
        max_delay=5.0,
        sleep=sleeps,
    )
    assert sleeps == pytest.approx([5.0, 5.0])


def test_deadline_raises_wait_timeout_naming_what_and_the_last_state() -> None:
    probe, sleeps = states("creating", "modifying"), Sleeps(real=True)
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        wait_until(
            "RDS acme-db available",
            probe,
            lambda s: s == "available",
            timeout=0.3,
            first_delay=0.01,
            max_delay=0.05,
            sleep=sleeps,
        )
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert "RDS acme-db available" in message
    assert "last seen: modifying" in message
    assert isinstance(caught.value, PhasegateError) and caught.value.exit_code == 1
    assert 0.3 <= elapsed < 0.3 + 5.0  # generous: never a hang
    assert probe.calls >= 3  # type: ignore[attr-defined]
    assert all(s <= 0.05 for s in sleeps)


def test_the_last_sleep_never_overshoots_the_deadline() -> None:
    """A long backoff delay is cut to the time left, so the deadline is kept, not a delay later."""
    probe, sleeps = states("pending"), Sleeps(real=True)
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match="cache acme-redis available"):
        wait_until(
            "cache acme-redis available",
            probe,
            lambda s: s == "available",
            timeout=0.2,
            first_delay=30.0,
            max_delay=30.0,
            sleep=sleeps,
        )
    elapsed = time.monotonic() - started
    assert sleeps and all(s <= 0.2 for s in sleeps)
    assert elapsed < 0.2 + 5.0  # a 30 s sleep would have been taken otherwise
    assert probe.calls >= 2  # type: ignore[attr-defined]  # a last look at the deadline


def test_zero_timeout_probes_once_then_raises() -> None:
    probe, sleeps = states("pending"), Sleeps()
    with pytest.raises(WaitTimeout, match="x done"):
        wait_until("x done", probe, lambda s: s == "done", timeout=0, sleep=sleeps)
    assert probe.calls == 1  # type: ignore[attr-defined]
    assert sleeps == []


def test_a_probe_error_is_not_swallowed() -> None:
    def probe() -> Any:
        raise AwsCallError("DescribeDBInstances", "acme-db", "AccessDenied", "no")

    with pytest.raises(AwsCallError, match="DescribeDBInstances on acme-db"):
        wait_until("RDS acme-db available", probe, bool, timeout=60, sleep=Sleeps())


def test_waits_on_real_state_in_the_sandbox(sandbox: str) -> None:
    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=sandbox))
    clients.rds.create_db_instance(
        DBInstanceIdentifier="wait-db",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        AllocatedStorage=20,
        MasterUsername="platform",
        MasterUserPassword="sandbox-only-password",
    )

    def status() -> str:
        [db] = clients.rds.describe_db_instances(DBInstanceIdentifier="wait-db")["DBInstances"]
        return db["DBInstanceStatus"]

    assert wait_until("RDS wait-db available", status, lambda s: s == "available", 30) == (
        "available"
    )
    with pytest.raises(WaitTimeout, match="RDS wait-db stopped; last seen: available"):
        wait_until(
            "RDS wait-db stopped",
            status,
            lambda s: s == "stopped",
            timeout=0.3,
            first_delay=0.05,
            max_delay=0.1,
        )
