"""Maintenance windows: UTC instants across DST changes, blackouts, the window guard.

Expected instants are written by hand from the offsets, not computed with zoneinfo:
Europe/Berlin CET = UTC+1, CEST = UTC+2; 2026 DST starts 2026-03-29 01:00 UTC (02:00 CET ->
03:00 CEST) and ends 2026-10-25 01:00 UTC (03:00 CEST -> 02:00 CET). America/New_York EST =
UTC-5, EDT = UTC-4; 2026 DST starts 2026-03-08 07:00 UTC (02:00 EST -> 03:00 EDT) and ends
2026-11-01 06:00 UTC (02:00 EDT -> 01:00 EST).
"""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import write_environment
from typer.testing import CliRunner

from phasegate.cli import app
from phasegate.config import EnvironmentConfig, parse_environment
from phasegate.errors import ConfigError
from phasegate.schedule import (
    WindowOpening,
    check_window,
    current_opening,
    local_to_utc,
    next_opening,
    wait_for_window,
)

BERLIN, NEW_YORK = "Europe/Berlin", "America/New_York"
SUNDAY_EARLY = {"days": ["sun"], "start": "02:00", "duration_minutes": 240}
SATURDAY_LATE = {"days": ["sat"], "start": "22:00", "duration_minutes": 360}


def u(*parts: int) -> datetime:
    """An aware UTC instant: u(2026, 3, 29, 1) is 2026-03-29 01:00 UTC."""
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def env(
    timezone: str = "UTC",
    windows: dict[str, dict[str, Any]] | None = None,
    phase_windows: dict[int, str] | None = None,
    blackout_dates: list[str] | None = None,
    **schedule: Any,
) -> EnvironmentConfig:
    return EnvironmentConfig.model_validate(
        {
            "name": "acme-prod",
            "tier": "prod",
            "discovery": {"tags": {"Environment": "acme-prod"}},
            "schedule": {
                "timezone": timezone,
                "windows": windows or {},
                "phase_windows": phase_windows or {},
                "blackout_dates": blackout_dates or [],
                **schedule,
            },
        }
    )


def test_the_tz_database_agrees_with_the_offsets_these_tests_are_written_from() -> None:
    second = timedelta(seconds=1)
    for zone_name, change, before, after in [
        (BERLIN, u(2026, 3, 29, 1), 1, 2),
        (BERLIN, u(2026, 10, 25, 1), 2, 1),
        (NEW_YORK, u(2026, 3, 8, 7), -5, -4),
        (NEW_YORK, u(2026, 11, 1, 6), -4, -5),
    ]:
        tz = ZoneInfo(zone_name)
        assert (change - second).astimezone(tz).utcoffset() == timedelta(hours=before)
        assert change.astimezone(tz).utcoffset() == timedelta(hours=after)


# (zone, window, local day it opens, expected UTC start, expected UTC end)
OPENINGS = [
    # Berlin, Sunday 02:00 for 4 h
    (BERLIN, SUNDAY_EARLY, date(2026, 3, 22), u(2026, 3, 22, 1), u(2026, 3, 22, 5)),  # CET
    # spring forward: 02:00 does not exist; opens at the change, 03:00 CEST, for 4 real hours
    (BERLIN, SUNDAY_EARLY, date(2026, 3, 29), u(2026, 3, 29, 1), u(2026, 3, 29, 5)),
    (BERLIN, SUNDAY_EARLY, date(2026, 4, 5), u(2026, 4, 5, 0), u(2026, 4, 5, 4)),  # CEST
    (BERLIN, SUNDAY_EARLY, date(2026, 10, 18), u(2026, 10, 18, 0), u(2026, 10, 18, 4)),
    # fall back: 02:00 happens twice; the first (CEST), closing 4 real hours later, 05:00 CET
    (BERLIN, SUNDAY_EARLY, date(2026, 10, 25), u(2026, 10, 25, 0), u(2026, 10, 25, 4)),
    (BERLIN, SUNDAY_EARLY, date(2026, 11, 1), u(2026, 11, 1, 1), u(2026, 11, 1, 5)),  # CET
    # Berlin, Saturday 22:00 for 6 h: the night of the change is inside the window
    (BERLIN, SATURDAY_LATE, date(2026, 3, 21), u(2026, 3, 21, 21), u(2026, 3, 22, 3)),
    (BERLIN, SATURDAY_LATE, date(2026, 3, 28), u(2026, 3, 28, 21), u(2026, 3, 29, 3)),
    (BERLIN, SATURDAY_LATE, date(2026, 4, 4), u(2026, 4, 4, 20), u(2026, 4, 5, 2)),
    (BERLIN, SATURDAY_LATE, date(2026, 10, 17), u(2026, 10, 17, 20), u(2026, 10, 18, 2)),
    (BERLIN, SATURDAY_LATE, date(2026, 10, 24), u(2026, 10, 24, 20), u(2026, 10, 25, 2)),
    (BERLIN, SATURDAY_LATE, date(2026, 10, 31), u(2026, 10, 31, 21), u(2026, 11, 1, 3)),
    # New York, Sunday 02:00 for 4 h
    (NEW_YORK, SUNDAY_EARLY, date(2026, 3, 1), u(2026, 3, 1, 7), u(2026, 3, 1, 11)),  # EST
    # spring forward: 02:00 does not exist; opens at the change, 03:00 EDT
    (NEW_YORK, SUNDAY_EARLY, date(2026, 3, 8), u(2026, 3, 8, 7), u(2026, 3, 8, 11)),
    (NEW_YORK, SUNDAY_EARLY, date(2026, 3, 15), u(2026, 3, 15, 6), u(2026, 3, 15, 10)),
    (NEW_YORK, SUNDAY_EARLY, date(2026, 10, 25), u(2026, 10, 25, 6), u(2026, 10, 25, 10)),
    # fall back: the repeated hour is 01:00-02:00, so 02:00 EST happens once
    (NEW_YORK, SUNDAY_EARLY, date(2026, 11, 1), u(2026, 11, 1, 7), u(2026, 11, 1, 11)),
    (NEW_YORK, SUNDAY_EARLY, date(2026, 11, 8), u(2026, 11, 8, 7), u(2026, 11, 8, 11)),
    # New York, Saturday 22:00 for 6 h
    (NEW_YORK, SATURDAY_LATE, date(2026, 2, 28), u(2026, 3, 1, 3), u(2026, 3, 1, 9)),
    (NEW_YORK, SATURDAY_LATE, date(2026, 3, 7), u(2026, 3, 8, 3), u(2026, 3, 8, 9)),
    (NEW_YORK, SATURDAY_LATE, date(2026, 3, 14), u(2026, 3, 15, 2), u(2026, 3, 15, 8)),
    (NEW_YORK, SATURDAY_LATE, date(2026, 10, 24), u(2026, 10, 25, 2), u(2026, 10, 25, 8)),
    (NEW_YORK, SATURDAY_LATE, date(2026, 10, 31), u(2026, 11, 1, 2), u(2026, 11, 1, 8)),
    (NEW_YORK, SATURDAY_LATE, date(2026, 11, 7), u(2026, 11, 8, 3), u(2026, 11, 8, 9)),
]


@pytest.mark.parametrize(
    ("zone_name", "window", "day", "start", "end"),
    OPENINGS,
    ids=[f"{o[0].split('/')[1]}-{o[1]['days'][0]}-{o[2]}" for o in OPENINGS],
)
def test_windows_open_and_close_at_the_right_utc_instants(
    zone_name: str, window: dict[str, Any], day: date, start: datetime, end: datetime
) -> None:
    config = env(zone_name, {"w": window}, {1: "w"})
    schedule = config.schedule
    day_before = datetime(day.year, day.month, day.day, 12, tzinfo=UTC) - timedelta(days=1)
    opening = next_opening(schedule, "w", day_before)
    assert opening == WindowOpening(start, end)
    assert opening.start.tzinfo is UTC and opening.end.tzinfo is UTC
    # the window lasts duration_minutes of real time, whatever the clocks did
    assert opening.duration == timedelta(minutes=window["duration_minutes"])
    second = timedelta(seconds=1)
    assert current_opening(schedule, "w", start - second) is None
    assert current_opening(schedule, "w", start) == opening
    assert current_opening(schedule, "w", end - second) == opening
    assert current_opening(schedule, "w", end) is None
    assert next_opening(schedule, "w", start) == opening  # at or after
    following = next_opening(schedule, "w", start + second).start - start  # a week, +- DST
    assert timedelta(days=7, hours=-1) <= following <= timedelta(days=7, hours=1)
    # and the guard agrees at those instants
    assert check_window(config, 1, start).action == "run"
    assert check_window(config, 1, start - second, wait=True).wait_until == start


def test_local_closing_times_move_with_the_change() -> None:
    """A 4-hour window spanning a change lasts 4 real hours, so it closes at another hour."""
    tz = ZoneInfo(BERLIN)
    schedule = env(BERLIN, {"w": SUNDAY_EARLY}).schedule
    spring = next_opening(schedule, "w", u(2026, 3, 28))
    assert spring.start.astimezone(tz).strftime("%H:%M %Z") == "03:00 CEST"
    assert spring.end.astimezone(tz).strftime("%H:%M %Z") == "07:00 CEST"
    autumn = next_opening(schedule, "w", u(2026, 10, 24))
    assert autumn.start.astimezone(tz).strftime("%H:%M %Z") == "02:00 CEST"
    assert autumn.end.astimezone(tz).strftime("%H:%M %Z") == "05:00 CET"


@pytest.mark.parametrize(
    ("zone_name", "wall", "expected"),
    [
        # Non-existent (spring-forward gap): the first instant after the gap, the change itself.
        # fold=0 arithmetic alone would give 01:30 UTC (03:30 CEST) for Berlin's 02:30.
        (BERLIN, datetime(2026, 3, 29, 2, 30), u(2026, 3, 29, 1)),
        (BERLIN, datetime(2026, 3, 29, 2, 0), u(2026, 3, 29, 1)),
        (BERLIN, datetime(2026, 3, 29, 2, 59), u(2026, 3, 29, 1)),
        (NEW_YORK, datetime(2026, 3, 8, 2, 30), u(2026, 3, 8, 7)),
        # Ambiguous (fall-back repeat): the first occurrence, in the offset before the change.
        (BERLIN, datetime(2026, 10, 25, 2, 30), u(2026, 10, 25, 0, 30)),  # 02:30 CEST, not CET
        (NEW_YORK, datetime(2026, 11, 1, 1, 30), u(2026, 11, 1, 5, 30)),  # 01:30 EDT, not EST
        # Ordinary times around the changes are unaffected.
        (BERLIN, datetime(2026, 3, 29, 3, 0), u(2026, 3, 29, 1)),
        (BERLIN, datetime(2026, 3, 29, 1, 59), u(2026, 3, 29, 0, 59)),
        (BERLIN, datetime(2026, 10, 25, 3, 0), u(2026, 10, 25, 2)),
        (NEW_YORK, datetime(2026, 11, 1, 0, 59), u(2026, 11, 1, 4, 59)),
    ],
)
def test_dst_edge_rule(zone_name: str, wall: datetime, expected: datetime) -> None:
    assert local_to_utc(wall, ZoneInfo(zone_name)) == expected


def test_a_window_starting_in_the_gap_opens_at_the_change_and_keeps_its_duration() -> None:
    window = {"days": ["sun"], "start": "02:30", "duration_minutes": 60}
    config = env(BERLIN, {"w": window}, {1: "w"}, phase_estimates={1: 30})
    opening = next_opening(config.schedule, "w", u(2026, 3, 28))
    assert opening == WindowOpening(u(2026, 3, 29, 1), u(2026, 3, 29, 2))  # 03:00-04:00 CEST
    # not open in the hour before the change (01:00-02:00 CET) ...
    assert check_window(config, 1, u(2026, 3, 29, 0, 45), wait=False).action == "refuse"
    # ... and open from the change on
    assert check_window(config, 1, u(2026, 3, 29, 1)).action == "run"


def test_an_ambiguous_start_opens_once_at_the_first_occurrence() -> None:
    window = {"days": ["sun"], "start": "01:30", "duration_minutes": 90}
    config = env(NEW_YORK, {"w": window}, {1: "w"}, phase_estimates={1: 30})
    opening = next_opening(config.schedule, "w", u(2026, 10, 31))
    # 01:30 EDT = 05:30 UTC, 90 real minutes: closes 07:00 UTC = 02:00 EST
    assert opening == WindowOpening(u(2026, 11, 1, 5, 30), u(2026, 11, 1, 7))
    # the second 01:30 (EST, 06:30 UTC) is inside that same opening, not a second one
    assert next_opening(config.schedule, "w", u(2026, 11, 1, 5, 31)).start == u(2026, 11, 8, 6, 30)


def test_a_blackout_date_is_skipped_by_next_opening_and_refused_by_the_guard() -> None:
    config = env(BERLIN, {"sunday": SUNDAY_EARLY}, {1: "sunday"}, ["2026-03-29"])
    schedule = config.schedule
    assert next_opening(schedule, "sunday", u(2026, 3, 28)) == WindowOpening(
        u(2026, 4, 5, 0), u(2026, 4, 5, 4)
    )
    assert current_opening(schedule, "sunday", u(2026, 3, 29, 2)) is None
    for wait in (True, False):
        decision = check_window(config, 1, u(2026, 3, 29, 2), wait=wait)
        assert decision.action == "refuse"
        message = decision.message
        assert message.startswith("acme-prod: phase 1: refused: 2026-03-29 is a blackout date")
        assert "Europe/Berlin" in message and "'sunday'" in message
        assert "2026-03-29 02:00 UTC (2026-03-29 04:00 CEST" in message  # now, UTC and local
        assert "2026-04-05 00:00 UTC (2026-04-05 02:00 CEST" in message  # the next opening


def test_a_blackout_date_is_a_day_in_the_environments_time_zone() -> None:
    # a phase with no window runs any time, except on a blackout date
    config = env(NEW_YORK, blackout_dates=["2026-12-24"])
    assert check_window(config, 2, u(2026, 12, 24, 4, 59)).action == "run"  # 23:59 EST on 23rd
    assert check_window(config, 2, u(2026, 12, 24, 5)).action == "refuse"  # 00:00 on the 24th
    late = check_window(config, 2, u(2026, 12, 25, 3))  # 22:00 EST, still the 24th in New York
    assert late.action == "refuse" and "2026-12-24 is a blackout date in America/New_York" in (
        late.message
    )
    assert check_window(config, 2, u(2026, 12, 25, 5)).action == "run"


def test_a_phase_that_does_not_fit_in_what_is_left_is_refused() -> None:
    config = env(BERLIN, {"w": SUNDAY_EARLY}, {1: "w"}, phase_estimates={1: 45})
    end = u(2026, 4, 5, 4)  # 06:00 CEST
    fits = check_window(config, 1, end - timedelta(minutes=45))
    assert fits.action == "run"
    assert fits.approval_deadline == end - timedelta(minutes=45)
    for wait in (True, False):
        late = check_window(config, 1, end - timedelta(minutes=44), wait=wait)
        assert late.action == "refuse"
        assert "acme-prod: phase 1: refused: window 'w' closes at 2026-04-05 04:00 UTC" in (
            late.message
        )
        assert "(2026-04-05 06:00 CEST, Europe/Berlin)" in late.message
        assert "44 min after now" in late.message and "estimated at 45 min" in late.message
        assert "next opens 2026-04-12 00:00 UTC" in late.message
    # an explicit estimate wins over the config's
    assert check_window(config, 1, end - timedelta(minutes=44), 30).action == "run"


def test_no_wait_outside_the_window_is_refused_and_wait_gives_the_opening() -> None:
    config = env(NEW_YORK, {"sat": SATURDAY_LATE}, {1: "sat"})
    now = u(2026, 3, 7, 12)  # Saturday 07:00 EST
    refused = check_window(config, 1, now, wait=False)
    assert refused.action == "refuse" and refused.wait_until is None
    assert refused.message == (
        "acme-prod: phase 1: refused (--no-wait): outside window 'sat' at 2026-03-07 12:00 UTC "
        "(2026-03-07 07:00 EST, America/New_York); it next opens 2026-03-08 03:00 UTC "
        "(2026-03-07 22:00 EST, America/New_York) to 2026-03-08 09:00 UTC "
        "(2026-03-08 05:00 EDT, America/New_York)"
    )
    waiting = check_window(config, 1, now, wait=True)
    assert waiting.action == "wait"
    assert waiting.wait_until == u(2026, 3, 8, 3)
    assert waiting.opening == WindowOpening(u(2026, 3, 8, 3), u(2026, 3, 8, 9))
    assert "waiting until it opens 2026-03-08 03:00 UTC" in waiting.message


def test_run_decision_caps_approval_timeouts_at_the_window() -> None:
    config = env(BERLIN, {"w": SUNDAY_EARLY}, {1: "w"})  # phase 1 estimate: 30 min (default)
    start, end = u(2026, 4, 5, 0), u(2026, 4, 5, 4)
    decision = check_window(config, 1, start)
    assert (decision.action, decision.window, decision.estimated_minutes) == ("run", "w", 30)
    assert decision.window_end == end
    assert decision.approval_deadline == end - timedelta(minutes=30)
    assert decision.approval_timeout(3600, now=start) == 3600  # the config's is shorter
    assert decision.approval_timeout(3600, now=end - timedelta(minutes=60)) == 1800
    assert decision.approval_timeout(3600, now=end - timedelta(minutes=10)) == 0
    assert decision.step_approval_timeout(3600, now=end - timedelta(minutes=10)) == 600
    # no window: runs any time, approvals keep the configured timeout
    free = check_window(config, 2, start)
    assert (free.action, free.window, free.window_end, free.approval_deadline) == (
        "run", None, None, None,
    )  # fmt: skip
    assert free.approval_timeout(3600) == 3600
    assert "no window configured" in free.message


def test_wait_for_window_sleeps_until_the_opening_then_runs() -> None:
    config = env(BERLIN, {"w": SUNDAY_EARLY}, {1: "w"})
    clock = [u(2026, 3, 29, 0)]  # an hour before the (gap-shifted) opening at 01:00 UTC
    sleeps: list[float] = []
    announced = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += timedelta(seconds=seconds)

    decision = wait_for_window(
        config, 1, clock=lambda: clock[0], sleep=sleep, on_wait=announced.append,
        max_sleep_seconds=600,
    )  # fmt: skip
    assert decision.action == "run" and decision.now == u(2026, 3, 29, 1)
    assert sleeps == [600.0] * 6
    assert [d.wait_until for d in announced] == [u(2026, 3, 29, 1)]  # logged once
    refused = wait_for_window(config, 1, wait=False, clock=lambda: u(2026, 3, 29, 0), sleep=sleep)
    assert refused.action == "refuse" and len(sleeps) == 6


def test_naive_instants_are_refused() -> None:
    config = env(BERLIN, {"w": SUNDAY_EARLY}, {1: "w"})
    with pytest.raises(ValueError, match="no time zone"):
        check_window(config, 1, datetime(2026, 3, 29, 2))


# --- config validation ---------------------------------------------------------------------

VALID = "name: x\ntier: dev\ndiscovery:\n  tags: {Environment: x}\n"


def load_error(tmp_path: Path, schedule: str) -> str:
    path = tmp_path / "x.yaml"
    path.write_text(VALID + "schedule:\n" + schedule)
    with pytest.raises(ConfigError) as caught:
        parse_environment(path)
    assert caught.value.exit_code == 2
    return str(caught.value)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (
            "  timezone: Mars/Olympus\n",
            "schedule.timezone: 'Mars/Olympus' is not an IANA time zone",
        ),
        (
            "  timezone: europe/berlin\n",
            "schedule.timezone: 'europe/berlin' is not an IANA time zone (did you mean "
            "'Europe/Berlin'?)",
        ),
        ("  timezone: localtime\n", "schedule.timezone: 'localtime' is not an IANA time zone"),
        (
            "  blackout_dates: ['2026-12-24', '24.12.2026']\n",
            "schedule.blackout_dates.1: '24.12.2026' is not a date in the form YYYY-MM-DD",
        ),
        (
            "  blackout_dates: ['2026-02-30']\n",
            "schedule.blackout_dates.0: '2026-02-30' is not a date: no such day in the calendar",
        ),
        (
            "  windows:\n    nightly: {days: [sun], start: '02:00', duration_minutes: 60}\n"
            "  phase_windows: {1: nighty}\n",
            "schedule.phase_windows: phase 1 uses window 'nighty', which schedule.windows does "
            "not define (did you mean 'nightly'? defined: 'nightly')",
        ),
        (
            "  phase_windows: {1: nightly}\n",
            "schedule.phase_windows: phase 1 uses window 'nightly', which schedule.windows does "
            "not define (defined: none)",
        ),
        (
            "  windows:\n    nightly: {days: [sun], start: '02:00', duration_minutes: 60}\n"
            "  phase_windows: {4: nightly}\n",
            "schedule.phase_windows: phase 4 does not exist; phases are 1, 2 and 3",
        ),
        (
            "  phase_estimates: {0: 10}\n",
            "schedule.phase_estimates: phase 0 does not exist; phases are 1, 2 and 3",
        ),
        (
            "  windows:\n    short: {days: [sun], start: '02:00', duration_minutes: 20}\n"
            "  phase_windows: {1: short}\n",
            "schedule.phase_estimates: phase 1 is estimated at 30 minutes, the default, which "
            "never fits in its window 'short' (20 minutes)",
        ),
    ],
    ids=[
        "not-a-zone", "zone-case", "localtime", "date-format", "no-such-day", "unknown-window",
        "no-windows", "no-phase-4", "estimate-phase-0", "estimate-too-long",
    ],
)  # fmt: skip
def test_bad_schedule_fails_to_load_naming_the_field(
    tmp_path: Path, schedule: str, expected: str
) -> None:
    message = load_error(tmp_path, schedule)
    assert message.startswith(f"{tmp_path / 'x.yaml'}: ")
    assert expected in message


def test_phase_estimates_merge_with_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(VALID + "schedule:\n  timezone: Europe/Berlin\n  phase_estimates: {1: 45}\n")
    assert parse_environment(path).schedule.phase_estimates == {1: 45, 2: 15, 3: 60}
    path.write_text(VALID)
    assert parse_environment(path).schedule.phase_estimates == {1: 30, 2: 15, 3: 60}


# --- the migration flow --------------------------------------------------------------------

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@pytest.mark.usefixtures("prefect_client_env")
def test_run_no_wait_outside_the_window_refuses_the_phase_and_changes_nothing(
    seeded: EnvironmentConfig, sandbox: str, tmp_path: Path
) -> None:
    from phasegate.inventory import discover

    # a window three days from now (UTC): closed now, whatever the time of day
    day = WEEKDAYS[(datetime.now(UTC).weekday() + 3) % 7]
    path = write_environment(
        tmp_path, "demo", sandbox,
        schedule={
            "timezone": "UTC",
            "windows": {"later": {"days": [day], "start": "00:00", "duration_minutes": 60}},
            "phase_windows": {1: "later"},
        },
    )  # fmt: skip
    before = discover(seeded)
    result = CliRunner().invoke(app, ["run", str(path), "--phase", "1", "--no-wait"])
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert "phase 1: refused" in output and "--no-wait" in output and "'later'" in output
    assert discover(seeded) == before


@pytest.mark.usefixtures("prefect_client_env")
def test_a_blackout_date_blocks_a_run(
    seeded: EnvironmentConfig, sandbox: str, tmp_path: Path
) -> None:
    from flows.migration import migration
    from phasegate.checkpoints import checkpoint_storage
    from phasegate.inventory import discover
    from phasegate.report import MigrationFailed

    today = datetime.now(UTC).date()  # and tomorrow, in case the test runs over midnight
    blackout = [today.isoformat(), (today + timedelta(days=1)).isoformat()]
    path = write_environment(tmp_path, "demo", sandbox, schedule={"blackout_dates": blackout})
    config = parse_environment(path)
    before = discover(seeded)
    with checkpoint_storage(config), pytest.raises(MigrationFailed) as failed:
        migration(str(path), phases=[1])
    [one] = failed.value.report.phases
    assert one.status == "refused"
    assert "is a blackout date in UTC" in one.detail
    assert discover(seeded) == before
