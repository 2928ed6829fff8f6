"""The Factory's semantic check builds the model from canonical bodies and points at
the file and line of each problem; the references the compiler checks itself (a
view's datasource, a topic's views) are not reported twice."""

from __future__ import annotations

from yaml import Node

from quarry.core.hashing import sha256_hex
from quarry.definitions.yaml_nodes import load_document
from quarry.factory.isolation import CompileLimits, ParsedFile, parse_inline
from quarry.factory.semantic_checks import semantic_problems
from quarry.store.revisions import DefinitionRow

VIEW = """\
name: orders
table: orders
datasource: warehouse
entities:
  - name: order
    type: primary
    key: id
dimensions:
  - name: id
    type: number
    expr: id
measures:
  - name: revenue
    type: sum
    expr: amount
"""
TOPIC = """\
name: sales
views:
  - orders
  - refunds
default_filters:
  - field: orders.nope
    eq:
      value: East
"""
FILES = {"orders.view.yml": VIEW, "sales.topic.yml": TOPIC}


def _parsed(path: str) -> ParsedFile:
    parsed = parse_inline(path, FILES[path].encode(), CompileLimits())
    assert isinstance(parsed, ParsedFile)
    return parsed


def _row(path: str) -> DefinitionRow:
    parsed = _parsed(path)
    return DefinitionRow(
        kind=parsed.kind.value,
        name=parsed.name,
        path=path,
        source_hash=sha256_hex(FILES[path].encode()),
        content_hash=sha256_hex(parsed.body_json.encode()),
    )


def _document(path: str) -> Node:
    return load_document(path, FILES[path].encode()).root


def test_problems_are_reported_at_file_and_line_once() -> None:
    rows = [_row(p) for p in FILES]
    bodies = {rows[0].content_hash: _parsed("orders.view.yml").body_json}
    asked: list[str] = []

    def body_of(path: str) -> str:  # the unchanged file: from the guarded parser
        asked.append(path)
        return _parsed(path).body_json

    problems = semantic_problems(rows, bodies, {"local"}, body_of=body_of, document_of=_document)
    assert asked == ["sales.topic.yml"]
    assert [f"{p.path}:{p.line}: {p.message}" for p in problems] == [
        "sales.topic.yml:6: unknown member 'orders.nope': view 'orders' has no field 'nope'"
    ]


def test_a_valid_workspace_has_no_problems() -> None:
    rows = [_row("orders.view.yml")]
    body = _parsed("orders.view.yml").body_json
    found = semantic_problems(
        rows,
        {rows[0].content_hash: body},
        {"warehouse"},
        body_of=lambda _path: None,
        document_of=_document,
    )
    assert found == []
