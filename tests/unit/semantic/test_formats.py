"""JSON rows of a semantic answer: the per-column fast path gives exactly what the
per-value conversion (``json_value``) gives, for every Arrow type an answer has."""

from __future__ import annotations

import datetime as dt
import json
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


def test_an_empty_answer_has_no_rows() -> None:
    table = pa.table({"a": pa.array([], pa.int64())})
    assert table_rows(table) == []
