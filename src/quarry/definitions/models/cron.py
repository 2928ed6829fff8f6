"""Cron expressions and time zones as validated field types.

Both are checked at compile time, where the error can still name the file, line and
column; the scheduler then never meets an expression it cannot evaluate.

Expressions have five fields (minute hour day-of-month month day-of-week) or six:
croniter's sixth field is *seconds* (``* * * * * */10`` is every ten seconds).
"""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import croniter
from pydantic import AfterValidator


def check_cron(value: str) -> str:
    fields = value.split()
    if len(fields) not in (5, 6):
        raise ValueError(
            f"cron expression {value!r} has {len(fields)} fields; expected 5 "
            "(minute hour day month weekday) or 6 (the 6th is seconds)"
        )
    if not croniter.is_valid(value):
        raise ValueError(f"invalid cron expression {value!r}")
    return " ".join(fields)


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        hint = ""
        lowered = value.lower()
        close = sorted(z for z in available_timezones() if z.lower().endswith(lowered))[:1]
        if close:
            hint = f"; did you mean '{close[0]}'?"
        raise ValueError(
            f"unknown time zone {value!r} (an IANA name like 'Europe/Berlin'){hint}"
        ) from None
    return value


Cron = Annotated[str, AfterValidator(check_cron)]
TimeZone = Annotated[str, AfterValidator(check_timezone)]
