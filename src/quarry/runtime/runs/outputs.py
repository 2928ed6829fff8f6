"""Step outputs as served: tables as JSON, CSV or Parquet; other outputs as JSON.

Checkpoints are stored once, in the engine's own exact format; the serving forms
are derived on request, so a checkpoint never has a second copy to keep in step.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from quarry.core.errors import BadRequest
from quarry.runtime.apps.values import json_value
from quarry.runtime.engine.results import (
    ListOutput,
    MapOutput,
    Output,
    StepResult,
    TableOutput,
    TextOutput,
)

MEDIA = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}


def table_json(table: pa.Table) -> dict[str, Any]:
    return {"columns": table.column_names, "rows": table.to_pylist()}


def _as_json(output: Output) -> Any:
    if isinstance(output, TableOutput):
        return table_json(output.table)
    if isinstance(output, TextOutput):
        return {"text": output.text}
    if isinstance(output, ListOutput):
        return {"items": [{k: _as_json(v) for k, v in item.items()} for item in output.items]}
    assert isinstance(output, MapOutput)
    return {"outputs": {k: _as_json(v) for k, v in output.outputs.items()}}


def render_output(data: bytes, stored: str, wanted: str) -> tuple[bytes, str]:
    if stored != "qsr":
        raise BadRequest(f"unknown stored output format {stored!r}")
    output = StepResult.from_bytes(data).output
    if isinstance(output, TableOutput):
        if wanted == "parquet":
            sink = io.BytesIO()
            pq.write_table(output.table, sink)
            return sink.getvalue(), MEDIA["parquet"]
        if wanted == "csv":
            sink = io.BytesIO()
            pacsv.write_csv(output.table, sink)
            return sink.getvalue(), MEDIA["csv"]
    elif wanted != "json":
        raise BadRequest("this step's output is not a table: available as json only")
    return json.dumps(_as_json(output), default=json_value).encode(), MEDIA["json"]
