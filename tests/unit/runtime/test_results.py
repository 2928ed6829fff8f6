from __future__ import annotations

import io
import json
from datetime import date
from decimal import Decimal

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from quarry.runtime.engine.errors import ExportFailed
from quarry.runtime.engine.exports import encode_output
from quarry.runtime.engine.journal import MemoryJournal
from quarry.runtime.engine.results import (
    ListOutput,
    MapOutput,
    StepResult,
    TableOutput,
    TextOutput,
)
from quarry.runtime.engine.views import MapView, TableView, to_view

TABLE = pa.table(
    {
        "id": pa.array([1, 2, None], type=pa.int32()),
        "name": ["a|b", "O'Brien", None],
        "day": [date(2024, 1, 1), None, date(2024, 2, 29)],
        "amount": pa.array([Decimal("1.50"), Decimal("2.25"), None], type=pa.decimal128(9, 2)),
    }
)


def test_step_results_round_trip_with_types() -> None:
    output = MapOutput(
        {
            "t": TableOutput(TABLE),
            "loop": ListOutput(({"x": TextOutput("one")}, {"x": TableOutput(pa.table({}))})),
            "empty": MapOutput({}),
        }
    )
    result = StepResult(output, {"rows": 3, "sql": "SELECT 1"})
    again = StepResult.from_bytes(result.to_bytes())
    assert again == result
    table = again.output.outputs["t"]  # type: ignore[union-attr]
    assert table.table.schema == TABLE.schema


def test_memory_journal_stores_bytes() -> None:
    journal = MemoryJournal()
    assert journal.get("tasks.0") is None
    journal.put("tasks.0", StepResult(TextOutput("hi")))
    assert isinstance(journal.entries["tasks.0"], bytes)
    assert journal.get("tasks.0") == StepResult(TextOutput("hi"))
    with pytest.raises(ValueError, match="not a serialised step result"):
        StepResult.from_bytes(b"nope")


def test_exports_encode_every_format() -> None:
    out = TableOutput(TABLE)
    assert pa_csv.read_csv(io.BytesIO(encode_output(out, "csv"))).num_rows == 3
    assert pq.read_table(io.BytesIO(encode_output(out, "parquet"))).equals(TABLE)
    rows = json.loads(encode_output(out, "json"))
    assert rows[0] == {"id": 1, "name": "a|b", "day": "2024-01-01", "amount": 1.5}
    assert rows[2]["id"] is None
    assert encode_output(out, "txt").decode().splitlines()[2] == "| 1 | a\\|b | 2024-01-01 | 1.50 |"
    assert encode_output(out, "sql", sql="SELECT 1") == b"SELECT 1"
    assert encode_output(TextOutput("hé"), "txt") == "hé".encode()
    assert encode_output(MapOutput({"a": TextOutput("x"), "b": out}), "csv").startswith(b'"id"')


@pytest.mark.parametrize(
    ("output", "fmt", "error"),
    [
        (TextOutput("x"), "parquet", ExportFailed),
        (TableOutput(TABLE), "xlsx", ExportFailed),
        (TableOutput(TABLE), "sql", ExportFailed),
        (TextOutput("x"), "csv", ExportFailed),
        (ListOutput(()), "csv", ExportFailed),
    ],
)
def test_impossible_exports_are_clear(output: object, fmt: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        encode_output(output, fmt)  # type: ignore[arg-type]


def test_views_for_templates() -> None:
    view = to_view(TableOutput(TABLE))
    assert isinstance(view, TableView)
    assert view.id == [1, 2, None] and view["name"][1] == "O'Brien"
    assert view[0]["id"] == 1 and view[9] is None and len(view) == 3
    assert [row["id"] for row in view] == [1, 2, None]
    assert str(view).startswith("| id | name | day | amount |\n|---|---|---|---|")
    with pytest.raises(AttributeError):
        _ = view.nope
    items = MapView({"items": TextOutput("x"), "values": "v"})
    assert items.values == "v" and str(items) == "v" and list(items) == ["items", "values"]
