"""Date filter values: ISO dates and times, or relative phrases ("7 days ago").

Oxy resolves relative expressions for date and datetime fields before compiling
(``normalize_date_value`` in its semantic builder); Quarry does the same with a
small grammar of its own, relative to the day the query is compiled:

* ``today``, ``now``, ``yesterday``, ``tomorrow``;
* ``N days|weeks|months|quarters|years ago``, ``in N days``, ``N days from now``;
* ``last|this|next week|month|quarter|year`` (the start of that period; weeks
  start on Monday);
* ``last|next|this monday`` ... ``sunday``.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

_UNITS = {
    "day": "day",
    "days": "day",
    "week": "week",
    "weeks": "week",
    "month": "month",
    "months": "month",
    "quarter": "quarter",
    "quarters": "quarter",
    "year": "year",
    "years": "year",
}
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_AGO = re.compile(r"^(\d+|an?|one)\s+([a-z]+)\s+ago$")
_IN = re.compile(r"^in\s+(\d+|an?|one)\s+([a-z]+)$")
_FROM_NOW = re.compile(r"^(\d+|an?|one)\s+([a-z]+)\s+from\s+now$")
_PERIOD = re.compile(r"^(last|this|next)\s+([a-z]+)$")


class NotADate(ValueError):
    """The text is neither an ISO date/time nor a relative phrase Quarry knows."""


def parse_date_value(value: object, today: date) -> date | datetime:
    """A ``date`` (whole day) or a ``datetime`` for ``value``; :class:`NotADate` if none."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise NotADate(f"expected a date, got {value!r}")
    text = value.strip()
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed.replace(tzinfo=None) if parsed.tzinfo is not None else parsed
    except ValueError:
        pass
    found = _relative(" ".join(text.lower().split()), today)
    if found is None:
        raise NotADate(
            f"'{value}' is not a date: expected YYYY-MM-DD or a relative expression "
            "such as '7 days ago', 'last month', 'today'"
        )
    return found


def _count(text: str) -> int:
    return 1 if text in ("a", "an", "one") else int(text)


def _relative(text: str, today: date) -> date | None:
    if text in ("today", "now"):
        return today
    if text == "yesterday":
        return today - timedelta(days=1)
    if text == "tomorrow":
        return today + timedelta(days=1)
    for pattern, sign in ((_AGO, -1), (_IN, 1), (_FROM_NOW, 1)):
        match = pattern.match(text)
        if match and match.group(2) in _UNITS:
            return shift(today, _UNITS[match.group(2)], sign * _count(match.group(1)))
    match = _PERIOD.match(text)
    if match:
        which, noun = match.groups()
        step = {"last": -1, "this": 0, "next": 1}[which]
        if noun in _UNITS:
            unit = _UNITS[noun]
            if unit == "day":
                return today + timedelta(days=step)
            return shift(period_start(today, unit), unit, step)
        if noun in _WEEKDAYS:
            target = _WEEKDAYS.index(noun)
            delta = target - today.weekday()
            if which == "last":
                return today + timedelta(days=delta - 7 if delta >= 0 else delta)
            if which == "next":
                return today + timedelta(days=delta + 7 if delta <= 0 else delta)
            return today + timedelta(days=delta)
    return None


def period_start(day: date, unit: str) -> date:
    if unit == "week":
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    if unit == "quarter":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    if unit == "year":
        return day.replace(month=1, day=1)
    return day


def shift(day: date, unit: str, n: int) -> date:
    """``day`` moved by ``n`` units; month ends clamp (31 Mar - 1 month = 28/29 Feb)."""
    if unit == "day":
        return day + timedelta(days=n)
    if unit == "week":
        return day + timedelta(weeks=n)
    months = n * {"month": 1, "quarter": 3, "year": 12}[unit]
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    last = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    return date(year, month, min(day.day, last))
