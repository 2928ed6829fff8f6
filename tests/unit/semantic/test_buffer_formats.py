"""JSON of decimals, dates and zone-less timestamps read from their Arrow buffers
(``quarry.runtime.semantic.formats``) is exactly the per-value conversion
(``json_value``) and its JSON bytes are the same: sliced chunks (an offset into the
buffer), nulls over garbage, values beyond 64 bits, and the text made once per
process for a repeated moment."""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import Decimal

import pyarrow as pa

from quarry.runtime.apps.values import json_value
from quarry.runtime.semantic import formats
from quarry.runtime.semantic.formats import encode, table_rows


def _slow(table: pa.Table) -> list[dict[str, object]]:
    return [{k: json_value(v) for k, v in row.items()} for row in table.to_pylist()]


def _decimal(unscaled: int, scale: int) -> Decimal:
    return Decimal(f"{unscaled}E-{scale}")  # exact (scaleb rounds to 28 digits)


def test_decimal128_from_its_unscaled_integer_equals_the_text_conversion() -> None:
    rnd = random.Random(1616)
    for scale in (0, 1, 2, 6, 10, 18, 37):
        values: list[Decimal | None] = []
        for _ in range(2000):
            digits = rnd.choice([1, 3, 9, 15, 16, 17, 19, 20, 30, 38])
            unscaled = rnd.randint(-(10**digits) + 1, 10**digits - 1)
            if rnd.random() < 0.2:
                rest = abs(unscaled) % 10**scale  # toward zero: a whole value
                unscaled -= rest if unscaled >= 0 else -rest
            values.append(None if rnd.random() < 0.05 else _decimal(unscaled, scale))
        values += [Decimal(0), _decimal(2**63 - 1, scale), _decimal(-(2**63), scale)]
        array = pa.array(values, pa.decimal128(38, scale))
        # chunks that start inside the buffer: the offset is honoured
        column = pa.chunked_array([array.slice(0, 700), array.slice(700, 900), array.slice(1600)])
        table = pa.table({"x": column})
        fast, slow = table_rows(table), _slow(table)
        assert fast == slow, scale
        assert [type(r["x"]) for r in fast] == [type(r["x"]) for r in slow], scale
        assert json.dumps(fast) == json.dumps(slow)  # 3 and 3.0 differ here


def test_nulls_are_null_whatever_the_buffer_holds_under_them() -> None:
    """A null slot's bytes are unspecified: a buffer with an out-of-range moment
    (and a huge decimal) under the null converts without falling back."""
    stored = pa.array([0, 2**62, 86_400_000_000], pa.int64())
    validity = pa.array([True, False, True]).buffers()[1]
    moments = pa.Array.from_buffers(pa.timestamp("us"), 3, [validity, stored.buffers()[1]])
    days = pa.Array.from_buffers(
        pa.date32(), 3, [validity, pa.array([0, 2**31 - 1, 1], pa.int32()).buffers()[1]]
    )
    rows = table_rows(pa.table({"at": moments, "day": days}))
    assert rows == [
        {"at": "1970-01-01T00:00:00", "day": "1970-01-01"},
        {"at": None, "day": None},
        {"at": "1970-01-02T00:00:00", "day": "1970-01-02"},
    ]


def test_dates_and_moments_equal_isoformat_and_are_made_once_per_process() -> None:
    rnd = random.Random(7)
    days = [
        dt.date(rnd.randint(1, 9999), rnd.randint(1, 12), rnd.randint(1, 28)) for _ in range(500)
    ]
    moments = [
        dt.datetime.combine(d, dt.time(rnd.randint(0, 23), 0, 0, rnd.choice([0, 5, 999_999])))
        for d in days
    ]
    table = pa.table(
        {
            "day": pa.chunked_array([pa.array(days[:200]), pa.array(days).slice(200)]),
            "at": pa.array(moments, pa.timestamp("us")),
            "at_ms": pa.array([m.replace(microsecond=0) for m in moments], pa.timestamp("ms")),
            "at_s": pa.array([m.replace(microsecond=0) for m in moments], pa.timestamp("s")),
        }
    )
    assert table_rows(table) == _slow(table)
    one = pa.table({"at": pa.array([dt.datetime(2031, 5, 6, 7, 8, 9)], pa.timestamp("us"))})
    table_rows(one)
    key = (
        "us",
        int(
            pa.array([dt.datetime(2031, 5, 6, 7, 8, 9)], pa.timestamp("us"))
            .cast(pa.int64())[0]
            .as_py()
        ),
    )
    assert formats._MADE[key] == "2031-05-06T07:08:09"
    formats._MADE[key] = "made once"  # the next answer looks it up, it does not make it
    try:
        assert table_rows(one) == [{"at": "made once"}]
    finally:
        del formats._MADE[key]
    assert table_rows(one) == [{"at": "2031-05-06T07:08:09"}]


def test_the_json_body_is_unchanged_for_an_answer_by_month() -> None:
    """The wire format: decimals are numbers (an int when whole), months ISO text."""
    months = [dt.datetime(2024, m, 1) for m in (1, 2, 3)]
    table = pa.table(
        {
            "region": ["East", "West", None],
            "month": pa.array(months, pa.timestamp("us")),
            "revenue": pa.array([Decimal("12.50"), Decimal("3.00"), None], pa.decimal128(38, 2)),
        }
    )
    body = json.loads(encode(table, "json"))
    assert body["rows"] == [
        {"region": "East", "month": "2024-01-01T00:00:00", "revenue": 12.5},
        {"region": "West", "month": "2024-02-01T00:00:00", "revenue": 3},
        {"region": None, "month": "2024-03-01T00:00:00", "revenue": None},
    ]
    assert b'"revenue":3}' in encode(table, "json")
