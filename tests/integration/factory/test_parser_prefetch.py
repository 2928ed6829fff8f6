"""The compile's Parser answers from its prefetched batch only for the same bytes.

Prefetched outcomes are keyed by path and content: a file whose bytes differ from
those prefetched (edited between the two reads) is parsed again, in both isolation
modes, and a file with problems raises them.
"""

from __future__ import annotations

import pytest

from quarry.core.errors import CompileFailed
from quarry.factory.isolation import CompileLimits, Parser


def _view(table: str) -> bytes:
    return (
        f"name: orders\ntable: {table}\n"
        "entities:\n  - name: order\n    type: primary\n    key: id\n"
        "dimensions:\n  - name: id\n    type: number\n    expr: id\n"
        "measures:\n  - name: n\n    type: count\n"
    ).encode()


@pytest.mark.parametrize("isolation", ["process", "inline"])
def test_prefetched_outcome_is_used_only_for_the_same_bytes(isolation: str) -> None:
    path = "semantics/views/orders.view.yml"
    before, after = _view("orders_2024"), _view("orders_2025")
    with Parser(CompileLimits(isolation=isolation)) as parser:  # type: ignore[arg-type]
        parser.prefetch([(path, before), ("broken.view.yml", b"name: [unclosed\n")])
        assert '"orders_2025"' in parser.parse_definition(path, after).body_json
        assert '"orders_2024"' in parser.parse_definition(path, bytes(before)).body_json
        with pytest.raises(CompileFailed) as failed:
            parser.parse_definition("broken.view.yml", b"name: [unclosed\n")
        assert failed.value.problems[0].path == "broken.view.yml"
