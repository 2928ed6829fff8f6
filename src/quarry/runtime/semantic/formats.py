"""A semantic answer as the caller asked for it: JSON, CSV, Arrow IPC or Parquet.

The format comes from ``?format=`` if given, else from the ``Accept`` header (the
first media type Quarry can produce), else JSON.
"""

from __future__ import annotations

import io
import json
import math
from decimal import Decimal
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from quarry.core.errors import BadRequest
from quarry.runtime.apps.values import json_value

MEDIA: dict[str, str] = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
}
_ACCEPT: dict[str, str] = {
    "application/json": "json",
    "text/csv": "csv",
    "application/vnd.apache.arrow.stream": "arrow",
    "application/vnd.apache.arrow.file": "arrow",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
}


def choose_format(param: str | None, accept: str | None) -> str:
    if param is not None:
        if param not in MEDIA:
            raise BadRequest(
                f"unknown format {param!r} (known: {', '.join(MEDIA)})", parameter="format"
            )
        return param
    for part in (accept or "").split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in _ACCEPT:
            return _ACCEPT[media]
    return "json"


def _column_json(column: pa.ChunkedArray) -> list[Any]:
    """A column's values as JSON values, exactly what ``json_value`` makes of each
    value; integers, text and booleans are already JSON, and decimals, dates and
    whole-second timestamps are converted by Arrow, so a cold answer does not pay
    a Python object per value for them (this runs on every answer encoded)."""
    kind = column.type
    if pa.types.is_decimal(kind) and kind.scale >= 0:
        return _decimals(column)
    if pa.types.is_date(kind):
        return list(pc.cast(column, pa.string()).to_pylist())
    if pa.types.is_timestamp(kind) and kind.tz is None:
        found = _naive_timestamps(column)
        if found is not None:
            return found
        if _whole_seconds(column):
            text = pc.cast(pc.cast(column, pa.timestamp("s")), pa.string())  # "2024-01-31 05:30:00"
            return list(pc.replace_substring(text, " ", "T", max_replacements=1).to_pylist())
    values: list[Any] = column.to_pylist()
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_string(kind):
        return values
    if pa.types.is_large_string(kind) or pa.types.is_null(kind):
        return values
    if pa.types.is_floating(kind):
        return [v if v is None or math.isfinite(v) else None for v in values]
    return [json_value(v) for v in values]


_ZONELESS_UNITS = frozenset({"s", "ms", "us"})


def _naive_timestamps(column: pa.ChunkedArray) -> list[Any] | None:
    """``json_value`` of each value of a zone-less timestamp in seconds, milli- or
    microseconds (``isoformat`` of the ``datetime`` Arrow makes of it), from Arrow's
    text of it (``2024-01-31 05:30:07.005000``), each distinct text fixed up once: an
    answer grouped by month repeats a few dozen values. None for nanoseconds and
    for a year Arrow does not print with four digits (the caller converts as
    before)."""
    if _unit(column.type) not in _ZONELESS_UNITS:
        return None
    fixed: dict[str, str] = {}
    out: list[Any] = []
    for text in pc.cast(column, pa.string()).to_pylist():
        if text is None:
            out.append(None)
            continue
        iso = fixed.get(text)
        if iso is None:
            iso = _isoformat(text)
            if iso is None:
                return None
            fixed[text] = iso
        out.append(iso)
    return out


def _isoformat(text: str) -> str | None:
    """``YYYY-MM-DD HH:MM:SS[.fff[fff]]`` as ``datetime.isoformat`` writes it: a ``T``,
    and the fraction as six digits, or none when it is zero."""
    if len(text) < 19 or text[4] != "-" or text[10] != " " or not text[:4].isdigit():
        return None
    fraction = text[20:].rstrip("0")
    if len(text) > 19 and (text[19] != "." or not text[20:].isdigit() or len(text) > 26):
        return None
    head = text[:10] + "T" + text[11:19]
    return head + "." + fraction.ljust(6, "0") if fraction else head


def _whole_seconds(column: pa.ChunkedArray) -> bool:
    """No value has a fraction of a second (``isoformat`` then prints none)."""
    if _unit(column.type) == "s":
        return True
    fraction = pc.any(pc.not_equal(pc.subsecond(column), 0)).as_py()
    return not fraction


def _unit(kind: pa.DataType) -> str:
    return str(getattr(kind, "unit", ""))


def _decimals(column: pa.ChunkedArray) -> list[Any]:
    """``json_value`` of each decimal (an int when whole, else the nearest float),
    from Arrow's text of it: ``float`` of the text is the float of the decimal."""
    scale = column.type.scale
    zeros = "." + "0" * scale
    cut = scale + 1
    out: list[Any] = []
    for text in pc.cast(column, pa.string()).to_pylist():
        if text is None:
            out.append(None)
        elif scale == 0 and "E" not in text:
            out.append(int(text))
        elif scale and text.endswith(zeros) and "E" not in text:
            out.append(int(text[:-cut]))
        elif "E" in text or "e" in text:
            out.append(json_value(Decimal(text)))
        else:
            out.append(float(text))
    return out


def table_rows(table: pa.Table) -> list[dict[str, object]]:
    names = table.column_names
    columns = [_column_json(column) for column in table.columns]
    # Every converted column has exactly num_rows values: zip without strict (a
    # quarter of this function's time on a 100-row answer).
    return [dict(zip(names, values)) for values in zip(*columns)]  # noqa: B905


def encode(table: pa.Table, fmt: str) -> bytes:
    if fmt == "csv":
        sink = io.BytesIO()
        pacsv.write_csv(table, sink)
        return sink.getvalue()
    if fmt == "parquet":
        sink = io.BytesIO()
        pq.write_table(table, sink)
        return sink.getvalue()
    if fmt == "arrow":
        stream = pa.BufferOutputStream()
        with ipc.new_stream(stream, table.schema) as writer:
            writer.write_table(table)
        return bytes(stream.getvalue().to_pybytes())
    body = {
        "columns": table.column_names,
        "rows": table_rows(table),
        "row_count": table.num_rows,
        "truncated": (table.schema.metadata or {}).get(b"quarry.truncated") == b"1",
    }
    try:
        return orjson.dumps(body)
    except (orjson.JSONEncodeError, TypeError):  # an int over 64 bits, a lone surrogate
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
