"""A cold query over the API (a result not cached) is not a cold compile: the
revision's model keeps the plan of the query's shape and binds each new filter
value to it; a new revision is a new model, whose plans start empty."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.api.semantic.conftest import Shop, compile_shop
from tests.integration.api.semantic.shop import REVENUE_BY_REGION_FOR_STATUS, hand_written, same

QUERY = "/api/v1/workspaces/shop/semantic/query"


def _by_region(status: str) -> dict[str, Any]:
    return {
        "topic": "sales",
        "measures": ["orders.revenue"],
        "dimensions": ["customers.region"],
        "filters": [{"field": "orders.status", "op": "eq", "value": status}],
        "orders": [{"field": "customers.region", "direction": "asc"}],
    }


def _rows(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [tuple(r[c] for c in body["columns"]) for r in body["rows"]]


@pytest.mark.backend_agnostic
def test_new_values_reuse_the_plan_and_a_new_revision_compiles_afresh(shop: Shop) -> None:
    with shop.client() as client:
        for status in ("returned", "complete", "pending"):
            got = client.post(QUERY, json=_by_region(status))
            assert got.status_code == 200, got.text
            assert got.headers["x-quarry-cache"] == "miss"
            assert same(
                _rows(got.json()), hand_written(shop.root, REVENUE_BY_REGION_FOR_STATUS, status)
            )
        sem = shop.app.state.semantic
        first = sem.models.model(shop.workspace, shop.revision_id)
        assert first.compiles == 1  # three cold answers, one compile

        topic = shop.root / "semantics" / "sales.topic.yml"
        topic.write_text(topic.read_text() + "# a new revision\n")
        _ws, revision = compile_shop(shop.svc, shop.root)
        assert revision != shop.revision_id
        got = client.post(QUERY, json=_by_region("returned"), params={"revision": revision})
        assert got.status_code == 200 and got.headers["x-quarry-revision"] == revision
        assert got.headers["x-quarry-cache"] == "miss"  # another revision, another answer
        second = sem.models.model(shop.workspace, revision)
        assert second is not first and second.compiles == 1
        assert first.compiles == 1
