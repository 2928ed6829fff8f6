"""Word (``.docx``) exports, written with python-docx.

A text (a formatter's output, usually Markdown) becomes a document: ``#`` lines
become headings, ``-``/``*`` and ``1.`` lines list items, other lines paragraphs
(``**bold**`` kept as bold runs). A table becomes a Word table with a header row,
of at most :data:`TABLE_ROW_LIMIT` rows (a note says how many there were): a Word
table is for reading, and python-docx builds one row at a time.
"""

from __future__ import annotations

import io
import re
from typing import Any

import pyarrow as pa
from docx import Document
from docx.text.paragraph import Paragraph

_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+(.*)$")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
TABLE_ROW_LIMIT = 1_000


def _runs(paragraph: Paragraph, text: str) -> None:
    """``text`` into ``paragraph``, ``**bold**`` spans as bold runs."""
    last = 0
    for match in _BOLD.finditer(text):
        if match.start() > last:
            paragraph.add_run(text[last : match.start()])
        paragraph.add_run(match.group(1)).bold = True
        last = match.end()
    if last < len(text):
        paragraph.add_run(text[last:])


def text_docx(text: str) -> bytes:
    doc = Document()
    for line in text.splitlines():
        if not line.strip():
            continue
        heading = _HEADING.match(line)
        if heading:
            doc.add_heading(heading.group(2).strip(), level=len(heading.group(1)))
            continue
        bullet = _BULLET.match(line)
        numbered = None if bullet else _NUMBERED.match(line)
        if bullet:
            _runs(doc.add_paragraph(style="List Bullet"), bullet.group(1))
        elif numbered:
            _runs(doc.add_paragraph(style="List Number"), numbered.group(1))
        else:
            _runs(doc.add_paragraph(), line)
    return _save(doc)


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def table_docx(table: pa.Table) -> bytes:
    doc = Document()
    grid = doc.add_table(rows=1, cols=max(table.num_columns, 1))
    grid.style = "Table Grid"
    for cell, name in zip(grid.rows[0].cells, table.column_names, strict=False):
        cell.text = name
        for run in cell.paragraphs[0].runs:
            run.bold = True
    for row in table.slice(0, TABLE_ROW_LIMIT).to_pylist():
        cells = grid.add_row().cells
        for cell, name in zip(cells, table.column_names, strict=False):
            cell.text = _cell(row[name])
    if table.num_rows > TABLE_ROW_LIMIT:
        doc.add_paragraph(f"The first {TABLE_ROW_LIMIT:,} of {table.num_rows:,} rows.")
    return _save(doc)


def _save(doc: Any) -> bytes:
    sink = io.BytesIO()
    doc.save(sink)
    return sink.getvalue()
