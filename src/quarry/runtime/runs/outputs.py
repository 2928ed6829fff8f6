"""Step outputs as stored (Parquet for tables, JSON otherwise) and as served."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from quarry.core.errors import BadRequest

MEDIA = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}


def table_to_parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def render_output(data: bytes, stored: str, wanted: str) -> tuple[bytes, str]:
    """Convert a stored output to the requested format (tables: json/csv/parquet)."""
    if stored == "parquet":
        if wanted == "parquet":
            return data, MEDIA["parquet"]
        table = pq.read_table(io.BytesIO(data))
        if wanted == "csv":
            sink = io.BytesIO()
            pacsv.write_csv(table, sink)
            return sink.getvalue(), MEDIA["csv"]
        rows = table.to_pylist()
        body = {"columns": table.column_names, "rows": rows}
        return json.dumps(body, default=str).encode(), MEDIA["json"]
    if wanted != "json":
        raise BadRequest(f"this step's output is {stored}, available as json only")
    return data, MEDIA["json"]
