"""JSON rows of a semantic answer: the per-column fast path gives exactly what the
per-value conversion (``json_value``) gives, for every Arrow type an answer has."""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import Decimal

import pyarrow as pa

from quarry.runtime.apps.values import json_value
from quarry.runtime.semantic.formats import encode, table_rows


def test_fast_rows_equal_per_value_conversion() -> None:
    table = pa.table(
        {
            "region": pa.array(["East", None, "Wëst"]),
            "big": pa.array(["a", "b", None], pa.large_string()),
            "month": pa.array([dt.date(2024, 1, 1), None, dt.date(2024, 3, 1)]),
            "at": pa.array([dt.datetime(2024, 1, 1, 5, 30), None, dt.datetime(2024, 3, 1)]),
            "revenue": pa.array([Decimal("12.50"), Decimal("3.00"), None], pa.decimal128(18, 2)),
            "n": pa.array([1, None, 3], pa.int64()),
            "ratio": pa.array([float("nan"), 1.5, float("inf")]),
            "flag": pa.array([True, None, False]),
            "nothing": pa.array([None, None, None]),
        }
    )
    slow = [{k: json_value(v) for k, v in row.items()} for row in table.to_pylist()]
    assert table_rows(table) == slow
    assert table_rows(table)[0]["revenue"] == 12.5 and table_rows(table)[1]["revenue"] == 3
    assert table_rows(table)[0]["ratio"] is None
    body = json.loads(encode(table, "json"))
    assert body["rows"] == slow and body["row_count"] == 3


def test_arrow_converted_columns_equal_per_value_conversion() -> None:
    """Decimals, dates and whole-second timestamps are converted by Arrow (text),
    not per value: every edge gives what ``json_value`` gives."""
    at = dt.datetime(2024, 1, 31, 5, 30, 7)
    table = pa.table(
        {
            "whole": pa.array(
                [Decimal("-0.00"), Decimal("3.00"), Decimal("-12.50"), None], pa.decimal128(38, 2)
            ),
            "fine": pa.array(
                [
                    Decimal("0E-10"),
                    Decimal("1E-10"),
                    Decimal("0.1000000000"),
                    Decimal("-7.0000000000"),
                ],
                pa.decimal128(20, 10),
            ),
            "huge": pa.array(
                [
                    Decimal("12345678901234567890123.5"),
                    Decimal("99999999999999999999999999999999999.0"),
                    None,
                    Decimal("0.1"),
                ],
                pa.decimal128(38, 1),
            ),
            "ints": pa.array(
                [Decimal(10) ** 30, Decimal(-5), None, Decimal(0)], pa.decimal128(38, 0)
            ),
            "wide": pa.array(
                [Decimal("0.30"), None, Decimal("1.25"), Decimal("2")], pa.decimal256(50, 2)
            ),
            "d64": pa.array(
                [dt.date(1, 1, 1), dt.date(9999, 12, 31), None, dt.date(2024, 2, 29)], pa.date64()
            ),
            "seconds": pa.array([at, None, dt.datetime(999, 1, 1), at], pa.timestamp("s")),
            "ms_whole": pa.array([at, at, None, dt.datetime(2024, 1, 1)], pa.timestamp("ms")),
            "us_mixed": pa.array([at, at.replace(microsecond=5), None, at], pa.timestamp("us")),
            "zoned": pa.array([at, None, at, at], pa.timestamp("us", tz="Europe/Paris")),
        }
    )
    slow = [{k: json_value(v) for k, v in row.items()} for row in table.to_pylist()]
    fast = table_rows(table)
    assert fast == slow
    for got, want in zip(fast, slow, strict=True):  # 3 and 3.0 are ==; their JSON is not
        assert [type(v) for v in got.values()] == [type(v) for v in want.values()]
    assert fast[0]["whole"] == 0 and isinstance(fast[0]["whole"], int)
    assert fast[0]["seconds"] == "2024-01-31T05:30:07" and str(fast[1]["us_mixed"]).endswith(
        ".000005"
    )
    body = encode(table, "json")  # an int over 64 bits: the standard encoder's output
    assert json.loads(body)["rows"] == slow


def test_an_empty_answer_has_no_rows() -> None:
    table = pa.table({"a": pa.array([], pa.int64())})
    assert table_rows(table) == []


def test_zoneless_timestamps_equal_per_value_conversion() -> None:
    """Timestamps in s, ms and us without a zone are converted from Arrow's text,
    each distinct value once: years 1 to 9999, fractions of every length, nulls,
    several chunks, many repeats (an answer by month)."""
    rnd = random.Random(16)
    for unit, step in (("s", 1_000_000), ("ms", 1_000), ("us", 1)):
        values: list[dt.datetime | None] = []
        for _ in range(3000):
            year = rnd.choice([1, 2, 999, 1000, 1969, 1970, 2024, 9999, rnd.randint(1, 9999)])
            micro = rnd.choice([0, 0, 1, 5_000, 100_000, 999_999, rnd.randint(0, 999_999)])
            moment = dt.datetime(
                year, rnd.randint(1, 12), rnd.randint(1, 28), rnd.randint(0, 23),
                rnd.randint(0, 59), rnd.randint(0, 59), micro // step * step,
            )  # fmt: skip
            values.append(None if rnd.random() < 0.05 else moment)
        values += [dt.datetime(2024, 1, 1)] * 50
        kind = pa.timestamp(unit)
        column = pa.chunked_array([pa.array(values[:1000], kind), pa.array(values[1000:], kind)])
        table = pa.table({"at": column})
        slow = [{"at": json_value(v)} for v in column.to_pylist()]
        assert table_rows(table) == slow, unit
