from __future__ import annotations

import pytest

from quarry.store.queries import load, parse

SOURCE = """\
-- pick: a query that includes a fragment
WITH
--@ include _ctes
SELECT id FROM picked

-- _ctes: shared CTEs
picked AS (SELECT 1 AS id)
"""


def test_fragments_are_pasted_in_and_not_queries_of_their_own() -> None:
    queries = parse(SOURCE)
    assert queries == {"pick": "WITH\npicked AS (SELECT 1 AS id)\nSELECT id FROM picked"}


def test_an_unknown_fragment_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown fragment '_nope'"):
        parse("-- q: x\n--@ include _nope\n")


def test_claim_statements_share_one_fair_pick() -> None:
    queries = load("queue_postgres.sql")
    assert not any(name.startswith("_") for name in queries)
    assert all("--@" not in sql for sql in queries.values())
    fair = "FOR UPDATE SKIP LOCKED"
    assert fair in queries["claim"] and fair in queries["complete_and_claim"]
