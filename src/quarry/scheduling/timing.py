"""When a cron expression fires, as UTC instants, with a defined DST policy.

A schedule names *wall-clock* times in its time zone. Cron is evaluated on naive
wall times (croniter), and each wall time is then turned into one instant:

* a wall time that exists once fires at that instant;
* a wall time in a **repeated** hour (clocks go back) fires once, at its *first*
  occurrence — the second pass through the hour fires nothing that already fired;
* a wall time in a **skipped** hour (clocks go forward) fires once, at the first
  valid instant after the gap (e.g. 02:30 on a spring-forward night in
  Europe/Berlin fires at 03:00 CEST). Several wall times in one gap fold into that
  one instant, which fires once.

Instants are strictly increasing, so "the next fire after t" is well defined and a
compare-and-swap from one to the next can never move backwards.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

# A repeated hour of an every-second schedule is 3600 wall times to step over.
_MAX_STEPS = 100_000


def _local_wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def resolve(wall: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant a naive wall time fires at (see the module docstring)."""
    first = wall.replace(tzinfo=tz, fold=0)
    if _local_wall(first.astimezone(UTC), tz) == wall:
        return first.astimezone(UTC)  # exists (if ambiguous, fold=0 is the first pass)
    # In a gap: fold=1 reads it with the offset before the jump (an instant before
    # the gap), fold=0 with the offset after it (after the gap); the jump lies between.
    low = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    high = first.astimezone(UTC)
    if low > high:
        low, high = high, low
    after = high.astimezone(tz).utcoffset()
    while (high - low) > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(tz).utcoffset() == after:
            high = mid
        else:
            low = mid
    return high.replace(microsecond=0)


def next_fire(cron: str, timezone: str, after: datetime) -> datetime:
    """The first fire instant strictly after ``after`` (aware), in UTC."""
    tz = ZoneInfo(timezone)
    after = after.astimezone(UTC)
    # Every wall time up to ``after``'s own resolves to an instant <= ``after`` (a gap's
    # wall times resolve to its end, a repeated hour's to its first pass), so starting
    # there skips nothing.
    it = croniter(cron, _local_wall(after, tz))
    for _ in range(_MAX_STEPS):
        wall = it.get_next(datetime)
        instant = resolve(wall, tz)
        if instant > after:
            return instant
    raise ValueError(f"cron {cron!r} in {timezone} has no fire time near {after.isoformat()}")


def fires_between(
    cron: str, timezone: str, start: datetime, end: datetime, *, limit: int | None = None
) -> list[datetime]:
    """Every fire instant in ``(start, end]`` (at most ``limit`` of them)."""
    out: list[datetime] = []
    t = start
    while limit is None or len(out) < limit:
        t = next_fire(cron, timezone, t)
        if t > end:
            break
        out.append(t)
    return out
