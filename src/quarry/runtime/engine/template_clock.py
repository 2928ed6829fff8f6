"""``now(fmt=, utc=)``: the current time as Oxy's renderer gives it.

Oxy formats with Rust's chrono: without ``fmt`` the time is RFC 3339 with as many
fractional digits as needed (none, 3, 6 or 9); with ``fmt`` it is chrono's strftime
dialect. Python's ``strftime`` (glibc) shares almost all of it; the directives that
differ or that glibc lacks (``%f`` is nanoseconds in chrono, ``%.f``, ``%.3f``,
``%3f``, ``%:z``, ``%::z``, ``%#z``, ``%Z`` for local time, ``%s``, ``%+``) are
written here before the rest goes to ``strftime``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

Clock = Callable[[bool], datetime]


def system_clock(utc: bool) -> datetime:
    return datetime.now(UTC) if utc else datetime.now().astimezone()


def _fraction_autosi(moment: datetime) -> str:
    micros = moment.microsecond
    if micros == 0:
        return ""
    if micros % 1000 == 0:
        return f".{micros // 1000:03d}"
    return f".{micros:06d}"


def _offset(moment: datetime, colons: int) -> str:
    delta = moment.utcoffset()
    seconds = int(delta.total_seconds()) if delta is not None else 0
    sign = "-" if seconds < 0 else "+"
    seconds = abs(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if colons == 0:
        return f"{sign}{hours:02d}{minutes:02d}"
    if colons == 1:
        return f"{sign}{hours:02d}:{minutes:02d}"
    if colons == 2:
        return f"{sign}{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{sign}{hours:02d}"


def rfc3339(moment: datetime) -> str:
    """chrono's ``to_rfc3339()``: ``2024-10-21T15:30:45.123+00:00``."""
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return base + _fraction_autosi(moment) + _offset(moment, 1)


_CHRONO_ONLY = re.compile(r"%(\.[369]?f|[369]f|f|:{1,3}z|#z|Z|s|\+|%)")


def chrono_format(moment: datetime, fmt: str, *, utc: bool) -> str:
    def replace(match: re.Match[str]) -> str:
        spec = match.group(1)
        nanos = moment.microsecond * 1000
        if spec == "%":
            text = "%"
        elif spec == "f":
            text = f"{nanos:09d}"
        elif spec == ".f":
            text = _fraction_autosi(moment)
        elif spec.startswith("."):
            digits = int(spec[1])
            text = "." + f"{nanos:09d}"[:digits]
        elif spec.endswith("f"):
            text = f"{nanos:09d}"[: int(spec[0])]
        elif spec == "#z":
            text = _offset(moment, 3)
        elif spec.endswith("z"):
            text = _offset(moment, len(spec) - 1)
        elif spec == "Z":
            text = "UTC" if utc else _offset(moment, 1)
        elif spec == "s":
            text = str(int(moment.timestamp()))
        else:  # "+"
            text = rfc3339(moment)
        return text.replace("%", "%%")

    return moment.strftime(_CHRONO_ONLY.sub(replace, fmt))


def make_now(clock: Clock = system_clock) -> Callable[..., str]:
    """The ``now`` global; keyword arguments only, as in Oxy."""

    def now(*args: Any, **kwargs: Any) -> str:
        if args:
            raise ValueError("now() takes keyword arguments only: now(fmt=..., utc=...)")
        unknown = sorted(set(kwargs) - {"fmt", "utc"})
        if unknown:
            raise ValueError(f"now() has no argument {unknown[0]!r} (it takes fmt and utc)")
        utc = kwargs.get("utc")
        fmt = kwargs.get("fmt")
        if utc is not None and not isinstance(utc, bool):
            raise ValueError("now(utc=...) takes true or false")
        if fmt is not None and not isinstance(fmt, str):
            raise ValueError("now(fmt=...) takes a format text such as '%Y-%m-%d'")
        moment = clock(bool(utc))
        if fmt is None:
            return rfc3339(moment)
        return chrono_format(moment, fmt, utc=bool(utc))

    return now
