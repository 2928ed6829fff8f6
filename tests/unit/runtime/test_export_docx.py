"""docx exports read back with python-docx."""

from __future__ import annotations

import io

import docx
import pyarrow as pa
import pytest

from quarry.runtime.engine import export_docx
from quarry.runtime.engine.exports import encode_output
from quarry.runtime.engine.results import TableOutput, TextOutput


def test_text_keeps_headings_lists_and_bold() -> None:
    data = encode_output(TextOutput("## Title\n\nplain **bold** end\n* item\n2) step\n"), "docx")
    doc = docx.Document(io.BytesIO(data))
    got = [(p.style.name if p.style else "", p.text) for p in doc.paragraphs]
    assert got == [
        ("Heading 2", "Title"),
        ("Normal", "plain bold end"),
        ("List Bullet", "item"),
        ("List Number", "step"),
    ]
    assert [(r.text, bool(r.bold)) for r in doc.paragraphs[1].runs] == [
        ("plain ", False),
        ("bold", True),
        (" end", False),
    ]


def test_table_rows_are_capped_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_docx, "TABLE_ROW_LIMIT", 3)
    table = pa.table({"id": [1, 2, 3, 4, 5], "name": ["a", None, "c", "d", "e"]})
    doc = docx.Document(io.BytesIO(encode_output(TableOutput(table), "docx")))
    rows = [[c.text for c in row.cells] for row in doc.tables[0].rows]
    assert rows == [["id", "name"], ["1", "a"], ["2", ""], ["3", "c"]]
    assert doc.paragraphs[-1].text == "The first 3 of 5 rows."
