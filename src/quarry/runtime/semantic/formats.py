"""A semantic answer as the caller asked for it: JSON, CSV, Arrow IPC or Parquet.

The format comes from ``?format=`` if given, else from the ``Accept`` header (the
first media type Quarry can produce), else JSON.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import pyarrow as pa
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
    """A column's values as JSON values; integers, text and booleans are already
    JSON, so only other types pay a Python call per value (this runs on every
    answer a cold query encodes)."""
    kind = column.type
    values: list[Any] = column.to_pylist()
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_string(kind):
        return values
    if pa.types.is_large_string(kind) or pa.types.is_null(kind):
        return values
    if pa.types.is_floating(kind):
        return [v if v is None or math.isfinite(v) else None for v in values]
    return [json_value(v) for v in values]


def table_rows(table: pa.Table) -> list[dict[str, object]]:
    names = table.column_names
    columns = [_column_json(column) for column in table.columns]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


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
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
