"""Arrow values as JSON: dates as ISO text, decimals as numbers (integral ones
exact), no NaN. Used by app documents and by step outputs served as JSON."""

from __future__ import annotations

import base64
import datetime as dt
import math
from decimal import Decimal
from typing import Any

import pyarrow as pa


def json_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return str(value)


def column_values(table: pa.Table, name: str, limit: int) -> list[Any]:
    return [json_value(v) for v in table.column(name).slice(0, limit).to_pylist()]


def column_kind(data_type: pa.DataType) -> str:
    """``number``, ``temporal``, ``boolean`` or ``text``: what a renderer needs to know."""
    if pa.types.is_integer(data_type) or pa.types.is_floating(data_type):
        return "number"
    if pa.types.is_decimal(data_type) or pa.types.is_duration(data_type):
        return "number"
    if pa.types.is_date(data_type) or pa.types.is_timestamp(data_type):
        return "temporal"
    if pa.types.is_boolean(data_type):
        return "boolean"
    return "text"
