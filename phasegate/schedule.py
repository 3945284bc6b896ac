"""Maintenance windows: when a phase may start, computed in the environment's time zone.

An environment's `schedule` (config/README.md) names weekly windows in an IANA time zone, the
blackout dates, and the window each phase must run in. This module turns that into UTC
instants and decides, for one phase at one instant, whether it runs now, waits for its window,
or is refused. It is pure: no Prefect, no AWS; the flow (flows/migration.py) acts on the
decision, and `wait_for_window` sleeps when it is told to wait.

Rules, chosen so a window means the same thing on every day of the year:

* A window opens on each of its `days` at `start`, wall-clock time in `schedule.timezone`,
  and stays open for `duration_minutes` of **real elapsed time**. A 4-hour window that spans
  a DST change lasts 4 hours, so its local closing time moves by the change (Europe/Berlin,
  Sunday 02:00 for 240 minutes: 2026-10-25 opens 02:00 CEST = 00:00 UTC and closes 05:00 CET
  = 04:00 UTC).
* **Spring forward (a local time that does not exist):** a window whose start falls in the
  gap opens at the first instant after the gap, the moment of the change (Europe/Berlin
  2026-03-29: 02:00 and 02:30 both open at 03:00 CEST = 01:00 UTC), then lasts its full
  duration from there.
* **Fall back (a local time that happens twice):** the window opens at the first occurrence
  (PEP 495 fold=0, the offset before the change): America/New_York 2026-11-01 01:30 opens at
  01:30 EDT = 05:30 UTC, not at 01:30 EST.
* **Blackout dates** are days in `schedule.timezone`. No phase starts on one: `check_window`
  refuses on a blackout date (with or without waiting, window or no window), and an opening
  whose local start date is a blackout date does not exist (`next_opening` and
  `current_opening` skip it). A phase that started the day before may run on into one.
* **A phase fits** when its estimate (`schedule.phase_estimates`, minutes) ends by the close
  of the window it starts in. One that would overrun is refused, never started late; the
  next run starts at the next opening and resumes from the checkpoints.
* **Approvals:** a phase's approval must come by `approval_deadline`, the latest start at
  which the phase still fits (window close minus the estimate). An approval still pending
  then (and so any approval still pending when the window closes) expires, and the run
  stops safely. An approval asked in the middle of a phase (prod's nat.remove) may take until
  the window closes (`window_end`).
* A phase with no entry in `phase_windows` runs any time (blackout dates still block it).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from phasegate.config import DEFAULT_PHASE_ESTIMATES, EnvironmentConfig, Schedule, Window

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # date.weekday() order
MAX_SLEEP_SECONDS = 60.0  # a waiting run wakes at least this often and decides again


@dataclass(frozen=True)
class WindowOpening:
    """One opening of a window: from `start` (inclusive) to `end` (exclusive), aware UTC."""

    start: datetime
    end: datetime

    def __contains__(self, instant: datetime) -> bool:
        return self.start <= instant < self.end

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


def utc_now() -> datetime:
    return datetime.now(UTC)


def _utc(instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{instant.isoformat()} has no time zone; pass an aware datetime")
    return instant.astimezone(UTC)


def zone(schedule: Schedule) -> ZoneInfo:
    """The schedule's time zone (validated as an IANA zone when the config was loaded)."""
    return ZoneInfo(schedule.timezone)


def blackout_days(schedule: Schedule) -> frozenset[date]:
    return frozenset(date.fromisoformat(day) for day in schedule.blackout_dates)


def local_date(schedule: Schedule, instant: datetime) -> date:
    """The calendar day `instant` falls on in the schedule's time zone."""
    return _utc(instant).astimezone(zone(schedule)).date()


def is_blackout(schedule: Schedule, instant: datetime) -> bool:
    return local_date(schedule, instant) in blackout_days(schedule)


def describe_instant(instant: datetime, tz: ZoneInfo) -> str:
    """'2026-03-29 01:00 UTC (2026-03-29 03:00 CEST, Europe/Berlin)'."""
    utc = _utc(instant)
    local = utc.astimezone(tz)
    return f"{utc:%Y-%m-%d %H:%M} UTC ({local:%Y-%m-%d %H:%M %Z}, {tz.key})"


def local_to_utc(wall: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant a naive local wall time stands for, by this module's DST rules.

    Ambiguous (it happens twice, fall back): the first occurrence. Non-existent (it falls in
    the spring-forward gap): the first instant after the gap, i.e. the moment of the change.
    """
    if wall.tzinfo is not None:
        raise ValueError("local_to_utc takes a naive wall-clock time")
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first  # exists (once, or twice and fold=0 is the first occurrence)
    # In a gap: fold=0 reads the wall time with the offset before the change, which lands
    # after the change; fold=1 with the offset after it, which lands before the change. The
    # change is the first instant between them whose wall time is at or past `wall`.
    low = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo, hi = 0, int((first - low).total_seconds())
    while lo < hi:  # transitions fall on whole seconds
        mid = (lo + hi) // 2
        if (low + timedelta(seconds=mid)).astimezone(tz).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid + 1
    return low + timedelta(seconds=lo)


def _window(schedule: Schedule, name: str) -> Window:
    try:
        return schedule.windows[name]
    except KeyError:
        defined = ", ".join(repr(w) for w in schedule.windows) or "none"
        raise KeyError(f"no window {name!r} in schedule.windows (defined: {defined})") from None


def opening_on(schedule: Schedule, window_name: str, day: date) -> WindowOpening | None:
    """The opening of `window_name` that starts on local `day`; None if none starts then."""
    window = _window(schedule, window_name)
    if WEEKDAYS[day.weekday()] not in window.days or day in blackout_days(schedule):
        return None
    hour, minute = (int(part) for part in window.start.split(":"))
    wall = datetime(day.year, day.month, day.day, hour, minute)
    start = local_to_utc(wall, zone(schedule))
    return WindowOpening(start, start + timedelta(minutes=window.duration_minutes))


def next_opening(schedule: Schedule, window_name: str, after: datetime) -> WindowOpening:
    """The first opening of `window_name` that starts at or after `after`, blackouts skipped."""
    after = _utc(after)
    first_day = local_date(schedule, after) - timedelta(days=1)
    # Each week has at least one window day and each blackout date removes at most one
    # opening, so this many days always hold an opening that is not blacked out.
    horizon = 7 * (len(schedule.blackout_dates) + 2) + 2
    for offset in range(horizon):
        opening = opening_on(schedule, window_name, first_day + timedelta(days=offset))
        if opening is not None and opening.start >= after:
            return opening
    raise RuntimeError(f"window {window_name!r} has no opening in {horizon} days after {after}")


def current_opening(schedule: Schedule, window_name: str, now: datetime) -> WindowOpening | None:
    """The opening of `window_name` that contains `now` (the one open longest, if several)."""
    now = _utc(now)
    today = local_date(schedule, now)
    # A window lasts at most a week, so an opening containing now started in the last 8 days.
    candidates = [
        opening
        for offset in range(-8, 2)
        if (opening := opening_on(schedule, window_name, today + timedelta(days=offset)))
        and now in opening
    ]
    return max(candidates, key=lambda o: o.end, default=None)


Action = Literal["run", "wait", "refuse"]


@dataclass(frozen=True)
class WindowDecision:
    """What the window guard says about one phase at one instant, and why (`message`).

    run: start now; `opening` is the open window (None when the phase has no window).
    wait: `opening` is the next opening; wait until `wait_until`, then decide again.
    refuse: do not start; `message` says why, naming the environment, phase, window and the
    UTC and local times.
    """

    action: Action
    environment: str
    phase: int
    window: str | None
    now: datetime
    estimated_minutes: int
    message: str
    opening: WindowOpening | None = None

    @property
    def wait_until(self) -> datetime | None:
        return self.opening.start if self.action == "wait" and self.opening else None

    @property
    def window_end(self) -> datetime | None:
        """When the open window closes (run with a window only)."""
        return self.opening.end if self.action == "run" and self.opening else None

    @property
    def approval_deadline(self) -> datetime | None:
        """The latest start at which the phase still fits: window close minus its estimate."""
        end = self.window_end
        return end - timedelta(minutes=self.estimated_minutes) if end else None

    def approval_timeout(self, configured_seconds: float, now: datetime | None = None) -> float:
        """approvals.timeout_seconds, capped at the seconds left until `approval_deadline`."""
        deadline = self.approval_deadline
        if deadline is None:
            return configured_seconds
        left = (deadline - _utc(now or utc_now())).total_seconds()
        return max(0.0, min(configured_seconds, left))

    def step_approval_timeout(
        self, configured_seconds: float, now: datetime | None = None
    ) -> float:
        """approvals.timeout_seconds, capped at the seconds left until the window closes."""
        end = self.window_end
        if end is None:
            return configured_seconds
        return max(0.0, min(configured_seconds, (end - _utc(now or utc_now())).total_seconds()))


def estimate_minutes(config: EnvironmentConfig, phase: int) -> int:
    return config.schedule.phase_estimates.get(phase, DEFAULT_PHASE_ESTIMATES.get(phase, 30))


def check_window(
    config: EnvironmentConfig,
    phase: int,
    now: datetime | None = None,
    estimated_minutes: int | None = None,
    wait: bool = True,
) -> WindowDecision:
    """Whether `phase` of `config`'s environment may start at `now` (default: the clock).

    `estimated_minutes` defaults to the config's estimate for the phase; `wait=False` (the
    CLI's --no-wait) turns "wait for the window" into a refusal.
    """
    schedule = config.schedule
    now = _utc(now or utc_now())
    tz = zone(schedule)
    estimate = estimate_minutes(config, phase) if estimated_minutes is None else estimated_minutes
    name = schedule.phase_windows.get(phase)
    where = f"{config.name}: phase {phase}"
    at = describe_instant(now, tz)

    def decide(action: Action, message: str, opening: WindowOpening | None = None):
        return WindowDecision(action, config.name, phase, name, now, estimate, message, opening)

    def span(opening: WindowOpening) -> str:
        return f"{describe_instant(opening.start, tz)} to {describe_instant(opening.end, tz)}"

    today = local_date(schedule, now)
    if today in blackout_days(schedule):
        then = ""
        if name is not None:
            then = f"; window {name!r} next opens {span(next_opening(schedule, name, now))}"
        return decide(
            "refuse",
            f"{where}: refused: {today.isoformat()} is a blackout date in {tz.key} (now {at}); "
            f"no phase starts on a blackout date{then}",
        )
    if name is None:
        return decide("run", f"{where}: no window configured for the phase; runs any time ({at})")

    current = current_opening(schedule, name, now)
    if current is not None:
        latest = current.end - timedelta(minutes=estimate)
        if now <= latest:
            return decide(
                "run",
                f"{where}: inside window {name!r} ({span(current)}) at {at}; the phase "
                f"(estimated {estimate} min) fits if it starts by {describe_instant(latest, tz)}",
                current,
            )
        left = (current.end - now).total_seconds() / 60
        upcoming = next_opening(schedule, name, current.end)
        return decide(
            "refuse",
            f"{where}: refused: window {name!r} closes at {describe_instant(current.end, tz)}, "
            f"{left:.0f} min after now ({at}), and the phase is estimated at {estimate} min "
            f"(schedule.phase_estimates), so it would overrun; the window next opens "
            f"{span(upcoming)}",
        )

    upcoming = next_opening(schedule, name, now)
    if not wait:
        return decide(
            "refuse",
            f"{where}: refused (--no-wait): outside window {name!r} at {at}; it next opens "
            f"{span(upcoming)}",
            upcoming,
        )
    return decide(
        "wait",
        f"{where}: outside window {name!r} at {at}; waiting until it opens {span(upcoming)}",
        upcoming,
    )


def wait_for_window(
    config: EnvironmentConfig,
    phase: int,
    *,
    wait: bool = True,
    estimated_minutes: int | None = None,
    clock: Callable[[], datetime] = utc_now,
    sleep: Callable[[float], None] = time.sleep,
    on_wait: Callable[[WindowDecision], None] | None = None,
    max_sleep_seconds: float = MAX_SLEEP_SECONDS,
) -> WindowDecision:
    """Decide for `phase`; while the answer is wait, sleep (at most `max_sleep_seconds` at a
    time, then decide again) until it is run or refuse, and return that.

    `on_wait` is told each time the instant being waited for changes (to log it once).
    """
    announced: datetime | None = None
    while True:
        decision = check_window(config, phase, clock(), estimated_minutes, wait)
        until = decision.wait_until
        if until is None:
            return decision
        if on_wait is not None and until != announced:
            on_wait(decision)
            announced = until
        left = (until - _utc(clock())).total_seconds()
        sleep(min(max(left, 0.01), max_sleep_seconds))
