"""wait_until: returns when done, backs off by its factor up to a cap, and a deadline is an error.

Delays are checked by recording the sleep arguments (a fake sleep); deadlines on a fake clock
that only the fake sleep moves, so a test asserts exactly which sleeps were taken and when the
deadline struck, never how long the machine took.
"""

from collections.abc import Callable, Iterator
from itertools import pairwise
from types import SimpleNamespace
from typing import Any

import pytest

from phasegate import waiting
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
    """A fake sleep that records its arguments and moves `clock` on by them."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> Sleeps:
    """wait_until's monotonic clock is this Sleeps' clock: time passes only when it sleeps."""
    sleeps = Sleeps()
    monkeypatch.setattr(waiting, "time", SimpleNamespace(monotonic=sleeps.clock, sleep=sleeps))
    return sleeps


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


def test_deadline_raises_wait_timeout_naming_what_and_the_last_state(fake_clock: Sleeps) -> None:
    probe, sleeps = states("creating", "modifying"), fake_clock
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
    message = str(caught.value)
    assert "RDS acme-db available" in message
    assert "last seen: modifying" in message
    assert isinstance(caught.value, PhasegateError) and caught.value.exit_code == 1
    # 0.01 grown by 1.6 up to the 0.05 cap, then 0.05 until the 0.3 s are used up; the last
    # sleep is what is left of them, and one last probe at the deadline.
    growing = [0.01, 0.016, 0.0256, 0.04096]
    expected = [*growing, 0.05, 0.05, 0.05, 0.05, 0.00744]  # 0.09256 + 0.2 + 0.00744 = 0.3
    assert sleeps == pytest.approx(expected)
    assert sum(sleeps) == pytest.approx(0.3)
    assert probe.calls == len(expected) + 1  # type: ignore[attr-defined]


def test_the_last_sleep_never_overshoots_the_deadline(fake_clock: Sleeps) -> None:
    """A long backoff delay is cut to the time left, so the deadline is kept, not a delay later."""
    probe, sleeps = states("pending"), fake_clock
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
    assert sleeps == pytest.approx([0.2])  # not the 30 s delay
    assert probe.calls == 2  # type: ignore[attr-defined]  # a last look at the deadline


def test_a_probe_that_takes_time_uses_up_the_deadline_too(fake_clock: Sleeps) -> None:
    """The deadline is wall time from the start, probes included, not the sum of the sleeps."""
    sleeps = fake_clock

    def slow_probe() -> str:
        sleeps.now += 4.0  # each look takes 4 s (a slow API)
        return "pending"

    with pytest.raises(WaitTimeout, match="timed out after 10s"):
        wait_until("x done", slow_probe, lambda s: s == "done", timeout=10, first_delay=1.0,
                   factor=1.0, sleep=sleeps)  # fmt: skip
    # t=4 probe, sleep 1; t=9 probe, sleep what is left (1); t=14 probe: past the deadline
    assert sleeps == pytest.approx([1.0, 1.0])


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


def test_max_overshoot_keeps_each_delay_within_a_share_of_the_time_waited(
    fake_clock: Sleeps,
) -> None:
    probe = states(*["modifying"] * 30, "available")
    wait_until(
        "RDS acme-db available", probe, lambda s: s == "available", timeout=3600,
        sleep=fake_clock, max_overshoot=0.1,
    )  # fmt: skip
    waited = 0.0
    for delay in fake_clock:
        assert delay <= max(0.5, 0.1 * waited) + 1e-9
        waited += delay
    # Without the bound the same wait backs off to 30 s sleeps.
    unbounded = Sleeps()
    wait_until("x", states(*["modifying"] * 30, "available"), lambda s: s == "available",
               timeout=3600, sleep=unbounded)  # fmt: skip
    assert max(unbounded) == 30.0 and max(fake_clock) < 30.0
