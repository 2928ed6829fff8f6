"""Fire times as documented in docs/schedules.md, DST included (a fake "now" is
fine here: the functions are pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from quarry.scheduling.ticks import advance
from quarry.scheduling.timing import fires_between, next_fire

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def _local(instants: list[datetime], tz: ZoneInfo) -> list[str]:
    return [t.astimezone(tz).strftime("%H:%M%z") for t in instants]


def test_every_second_with_the_sixth_field() -> None:
    start = datetime(2026, 6, 1, 12, 0, 0, 500_000, tzinfo=UTC)
    got = fires_between("* * * * * *", "UTC", start, start + timedelta(seconds=3))
    assert got == [datetime(2026, 6, 1, 12, 0, s, tzinfo=UTC) for s in (1, 2, 3)]


def test_skipped_hour_fires_once_at_the_first_valid_instant() -> None:
    # Europe/Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST.
    start = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    end = datetime(2026, 3, 29, 3, 0, tzinfo=UTC)
    hourly = fires_between("30 * * * *", "Europe/Berlin", start, end)
    assert _local(hourly, BERLIN) == [
        "00:30+0100",
        "01:30+0100",
        "03:00+0200",
        "03:30+0200",
        "04:30+0200",
    ]
    # A daily job inside the gap runs that day at 03:00, once.
    daily = fires_between("30 2 * * *", "Europe/Berlin", start - timedelta(days=1), end)
    assert _local(daily, BERLIN) == ["02:30+0100", "03:00+0200"]
    # Several wall times in the gap fold into one fire.
    in_gap = fires_between("*/20 2 * * *", "Europe/Berlin", start, end)
    assert _local(in_gap, BERLIN) == ["03:00+0200"]


def test_repeated_hour_fires_once_at_the_first_pass() -> None:
    # America/New_York, 2026-11-01: 02:00 EDT falls back to 01:00 EST.
    start = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
    end = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    got = fires_between("30 * * * *", "America/New_York", start, end)
    assert _local(got, NEW_YORK) == [
        "23:30-0400",
        "00:30-0400",
        "01:30-0400",
        "02:30-0500",
        "03:30-0500",
    ]
    # Asked from inside the second pass, the next fire is after it, not before.
    second_pass = datetime(2026, 11, 1, 6, 10, tzinfo=UTC)  # 01:10 EST
    assert _local([next_fire("30 * * * *", "America/New_York", second_pass)], NEW_YORK) == [
        "02:30-0500"
    ]


def test_instants_strictly_increase_across_transitions() -> None:
    for tz, day in (("Europe/Berlin", (2026, 3, 29)), ("Europe/Berlin", (2026, 10, 25))):
        start = datetime(*day, tzinfo=UTC) - timedelta(hours=2)
        got = fires_between("*/15 * * * *", tz, start, start + timedelta(hours=6))
        assert got == sorted(set(got))


@pytest.mark.parametrize(
    ("late", "catchup", "expected_folded"),
    [(0.5, 5.0, 0), (3.5, 5.0, 0), (10.5, 2.0, 10)],
)
def test_catchup_folds_only_windows_older_than_the_grace(
    late: float, catchup: float, expected_folded: int
) -> None:
    due = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
    now = due + timedelta(seconds=late)
    nxt, folded = advance("* * * * * *", "UTC", due, now, catchup)
    assert folded == expected_folded
    if expected_folded:
        assert nxt == due + timedelta(seconds=11)
    else:
        assert nxt == due + timedelta(seconds=1)
