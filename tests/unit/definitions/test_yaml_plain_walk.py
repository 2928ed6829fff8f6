"""The one-walk build of plain documents (yaml_nodes._plain_document) gives what
PyYAML's constructor gives with the same loader, and the same problems."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from quarry.core.errors import CompileFailed, Problem
from quarry.definitions.yaml_nodes import _check_nodes, _Loader, load_document

ROOT = Path(__file__).resolve().parents[3]

TRICKY = [
    "a: 1\nb: [1, 2.5, -3, no, on, true, False, ~, null, 0x1F, 0o17, 12:30, 2024-01-01]\n",
    "a: {x: 1, x: 2}\nb: 1\nb: 3\n",  # duplicates: the last wins, reported
    "a: !!bool yes\nb: !!str 1\nc: !!float 1\nd: !!int '7'\n",
    "<<: {a: 1}\nb: 2\n",  # a merge key: left to PyYAML
    "? [a]\n: 1\n",  # a collection as a key
    "a: !!timestamp 2024-01-01\n",
    "1: a\n2.5: b\ntrue: c\n~: d\n'1': e\n",
    "a: .inf\nb: -.Inf\nc: .NaN\n",  # not finite: reported
    "a: !!set {x, y}\n",
    "nested:\n  - name: x\n    tasks:\n      - {name: y, type: execute_sql}\n",
    "a: ''\nb: \"\"\nc:\n",
]


def _workspace_files() -> list[Path]:
    found = sorted((ROOT / "tests").rglob("*.yml")) + sorted((ROOT / "examples").rglob("*.yml"))
    return [p for p in found if p.stat().st_size < 200_000]


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _reference(text: str) -> tuple[object, list[Problem]]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        assert node is not None
        return loader.construct_document(node), sorted(_check_nodes("f.yml", node))
    finally:
        loader.dispose()


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_documents_build_as_pyyaml_builds_them(text: str) -> None:
    try:
        value, problems = _reference(text)
    except yaml.YAMLError:  # PyYAML refuses it: so does load_document
        with pytest.raises(CompileFailed):
            load_document("f.yml", text.encode())
        return
    try:
        document = load_document("f.yml", text.encode())
    except CompileFailed as failed:
        pytest.fail(f"refused: {failed.problems}")
    assert _same(document.value, value)
    assert sorted(document.problems) == problems


def test_every_yaml_file_of_the_repository_builds_as_pyyaml_builds_it() -> None:
    files = _workspace_files()
    assert len(files) > 50
    checked = 0
    for path in files:
        text = path.read_text(encoding="utf-8-sig")
        try:
            document = load_document("f.yml", text.encode())
        except CompileFailed:
            continue  # refused before building (not a mapping, invalid YAML, ...)
        value, problems = _reference(text)
        assert _same(document.value, value), path
        assert sorted(document.problems) == problems, path
        checked += 1
    assert checked > 50
