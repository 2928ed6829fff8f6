"""Oxy's own documentation examples compile, with warnings only where Oxy itself
ignores a key (see workspaces/oxy_docs/INDEX.md for where each comes from)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quarry.factory.compiler import analyze
from tests.conformance.corpus import WORKSPACES

DOCS = WORKSPACES / "oxy_docs"
EXPECTED: dict[str, list[str]] = json.loads((DOCS / "expected_warnings.json").read_text())
EXAMPLES = sorted(p.name for p in DOCS.iterdir() if p.is_dir())


def test_every_example_is_here() -> None:
    assert len(EXAMPLES) == 94


@pytest.mark.parametrize("example", EXAMPLES)
def test_docs_example_compiles_with_only_the_warnings_oxy_would_ignore(example: str) -> None:
    analysis = analyze(Path(DOCS / example))
    assert [str(w) for w in analysis.warnings] == EXPECTED.get(example, [])
