"""A semantic answer as the caller asked for it: JSON, CSV, Arrow IPC or Parquet.

The format comes from ``?format=`` if given, else from the ``Accept`` header (the
first media type Quarry can produce), else JSON.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import sys
from decimal import Decimal
from typing import Any, Literal

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
    zone-less timestamps are read from their Arrow buffers (the integers under the
    values), so a cold answer does not pay a Python object per value for them, nor
    Arrow compute calls, whose fixed cost (~30 us a cast) is most of a small
    answer's (this runs on every answer encoded)."""
    kind = column.type
    if pa.types.is_decimal(kind) and kind.scale >= 0:
        found = _decimal128s(column)
        return found if found is not None else _decimals(column)
    if pa.types.is_date(kind):
        found = _date32s(column)
        return found if found is not None else list(pc.cast(column, pa.string()).to_pylist())
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


_LITTLE = sys.byteorder == "little"  # Arrow buffers are in the machine's byte order
_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_DAY = dt.date(1970, 1, 1)
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000}
_TWO_64 = 1 << 64
# Text of moments and days already made, for every answer of the process: (unit,
# stored integer) -> isoformat. A pure function of its key; answers by month or
# day repeat the same few thousand keys, so a cold answer mostly looks them up.
_MADE: dict[tuple[str, int], str] = {}
_MADE_MAX = 100_000


def _nulls(chunk: pa.Array) -> list[int]:
    """Positions of the null values of ``chunk`` (none: no Arrow call)."""
    if not chunk.null_count:
        return []
    return list(pc.indices_nonzero(chunk.is_null()).to_pylist())


def _words(
    chunk: pa.Array, fmt: Literal["i", "q"], per_value: int, size: int, nulls: list[int]
) -> list[int]:
    """The machine integers of ``chunk``'s value buffer for its values (``per_value``
    integers of ``size`` bytes each), honouring the chunk's offset; those under a
    null are zero (Arrow does not promise what the buffer holds there)."""
    start = chunk.offset * per_value * size
    data = memoryview(chunk.buffers()[1])[start : start + len(chunk) * per_value * size]
    words: list[int] = data.cast(fmt).tolist()
    for i in nulls:
        words[i * per_value : (i + 1) * per_value] = [0] * per_value
    return words


def _decimal128s(column: pa.ChunkedArray) -> list[Any] | None:
    """``json_value`` of each ``decimal128`` (an int when whole, else the nearest
    float) from its unscaled 128-bit integer: ``unscaled / 10**scale`` of two
    Python ints is correctly rounded, as ``float`` of the decimal's text is. None
    for other decimal widths (the caller converts the text)."""
    if not _LITTLE or not isinstance(column.type, pa.Decimal128Type):
        return None
    unit = 10**column.type.scale
    out: list[Any] = []
    for chunk in column.chunks:
        nulls = _nulls(chunk)
        words = _words(chunk, "q", 2, 8, nulls)
        lows, highs = words[0::2], words[1::2]
        values: list[Any] = []
        for low, high in zip(lows, highs):  # noqa: B905 (equal lengths by construction)
            if high != low >> 63:  # not a 64-bit value: the whole 128 bits
                low = high * _TWO_64 + (low & (_TWO_64 - 1))
            whole, rest = divmod(low, unit)
            values.append(low / unit if rest else whole)
        for i in nulls:
            values[i] = None
        out += values
    return out


def _date32s(column: pa.ChunkedArray) -> list[Any] | None:
    """``isoformat`` of each ``date32`` (days since 1970-01-01), each distinct day
    made once. None for ``date64`` and for a day ``datetime.date`` cannot hold."""
    if not _LITTLE or column.type != pa.date32():
        return None
    if len(_MADE) > _MADE_MAX:
        _MADE.clear()
    made = _MADE
    out: list[Any] = []
    try:
        for chunk in column.chunks:
            nulls = _nulls(chunk)
            values: list[Any] = []
            for days in _words(chunk, "i", 1, 4, nulls):
                text = made.get(("d", days))
                if text is None:
                    text = made[("d", days)] = (_EPOCH_DAY + dt.timedelta(days=days)).isoformat()
                values.append(text)
            for i in nulls:
                values[i] = None
            out += values
    except OverflowError:
        return None
    return out


def _naive_timestamps(column: pa.ChunkedArray) -> list[Any] | None:
    """``json_value`` of each value of a zone-less timestamp in seconds, milli- or
    microseconds: ``isoformat`` of the ``datetime`` Arrow makes of it (1970-01-01
    plus the stored count), each distinct value made once: an answer grouped by
    month repeats a few dozen values, and other answers repeat them (``_MADE``).
    None for nanoseconds and for a moment ``datetime`` cannot hold (the caller
    converts as before)."""
    per_second = _PER_SECOND.get(_unit(column.type))
    if per_second is None or not _LITTLE:
        return None
    to_micro = 1_000_000 // per_second
    unit = _unit(column.type)
    if len(_MADE) > _MADE_MAX:
        _MADE.clear()
    made = _MADE
    out: list[Any] = []
    try:
        for chunk in column.chunks:
            nulls = _nulls(chunk)
            values: list[Any] = []
            for count in _words(chunk, "q", 1, 8, nulls):
                text = made.get((unit, count))
                if text is None:
                    moment = _EPOCH + dt.timedelta(microseconds=count * to_micro)
                    text = made[(unit, count)] = moment.isoformat()
                values.append(text)
            for i in nulls:
                values[i] = None
            out += values
    except OverflowError:
        return None
    return out


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
