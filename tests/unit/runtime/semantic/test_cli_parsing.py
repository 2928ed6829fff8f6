"""``quarry query``'s filter, time and order options."""

from __future__ import annotations

import pytest

from quarry.cli_semantic import build_body, parse_filter, parse_time
from quarry.core.errors import BadRequest


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("orders.total>=10", {"field": "orders.total", "op": "gte", "value": 10}),
        ("orders.status!=paid", {"field": "orders.status", "op": "neq", "value": "paid"}),
        ("o.d < 2024-01-01", {"field": "o.d", "op": "lt", "value": "2024-01-01"}),
        ("o.s='a=b'", {"field": "o.s", "op": "eq", "value": "a=b"}),
        ("o.r in East, West", {"field": "o.r", "op": "in", "values": ["East", "West"]}),
        ("o.r NOT IN 1,2", {"field": "o.r", "op": "not_in", "values": [1, 2]}),
    ],
)
def test_filters(spec: str, expected: dict[str, object]) -> None:
    assert parse_filter(spec) == expected


def test_bad_filter_names_the_option() -> None:
    with pytest.raises(BadRequest, match="--filter"):
        parse_filter("orders.total ~ 3")


def test_body() -> None:
    assert parse_time("o.d:month") == {"dimension": "o.d", "granularity": "month"}
    body = build_body("sales", ["o.r"], [], ["o.d"], [], ["o.r:desc"], 5, None)
    assert body == {
        "topic": "sales",
        "measures": ["o.r"],
        "time_dimensions": [{"dimension": "o.d", "granularity": None}],
        "orders": [{"field": "o.r", "direction": "desc"}],
        "limit": 5,
    }
