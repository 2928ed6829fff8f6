"""A workspace's config.yml cannot point a warehouse at Quarry's own state database
(issue 13, item 2): not by its address, not by another spelling of its host, not by
another database of the same cluster. Tenant globex's editor tries to read every
tenant's tokens and to insert an admin token for acme; the tokens table is the same
afterwards and nothing of it reaches the run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from quarry.store.auth_tables import api_tokens
from tests.integration.runtime.connectors.clusters import private_cluster
from tests.integration.runtime.connectors.conftest import Fleet, failure, running_fleet
from tests.support.tenancy import ACME, s3_url

STEAL = "SELECT tenant_id, role, token_hash FROM api_tokens"
FORGE = (
    "INSERT INTO api_tokens (id, tenant_id, role, name, email, token_hash, prefix, created_at)"
    " VALUES ('forged', 'acme', 'admin', 'x', 'x', 'forged-hash', 'qy_', now())"
)


def _tokens(fleet: Fleet) -> list[tuple[Any, ...]]:
    with fleet.dep.svc.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(api_tokens).order_by(api_tokens.c.id))]


def _attack(fleet: Fleet, host: str, database: str) -> list[dict[str, Any]]:
    """globex's workflows that read and forge tokens through a warehouse at ``host``."""
    port = make_url(fleet.state_url).port or 5432
    config = fleet.config_with(
        f"{{name: state, type: postgres, host: '{host}', port: '{port}', user: postgres,"
        f" database: {database}}}"
    )
    step = "tasks:\n  - {{name: attempt, type: execute_sql, database: state, sql_query: {sql}}}\n"
    fleet.add_workflows(
        {"steal": step.format(sql=json.dumps(STEAL)), "forge": step.format(sql=json.dumps(FORGE))},
        config=config,
    )
    return [fleet.run("steal"), fleet.run("forge")]


def _assert_nothing_reached(fleet: Fleet, runs: list[dict[str, Any]], before: list[Any]) -> None:
    for run in runs:
        assert run["state"] == "failed", run
        assert all(not step.get("rows") for step in run.get("steps", []))
    assert _tokens(fleet) == before
    hashes = [str(row[5]) for row in before]
    for run in runs:
        text = json.dumps(run)
        assert not any(h in text for h in hashes)


@pytest.fixture
def open_loopback_fleet(
    fleet_env: None,
    request: pytest.FixtureRequest,
    pg_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Fleet]:
    """A fleet whose operator opted into loopback warehouses: only the identity check
    stands between a workspace and the state cluster."""
    with running_fleet(
        pg_database, s3_url(request, monkeypatch), tmp_path, warehouse_allow_loopback=True
    ) as fleet:
        yield fleet


def test_the_state_database_is_refused_by_default(fleet: Fleet) -> None:
    before = _tokens(fleet)
    database = make_url(fleet.state_url).database
    assert database is not None
    runs = _attack(fleet, "localhost", database)
    _assert_nothing_reached(fleet, runs, before)
    assert "loopback" in failure(runs[0]) and "QUARRY_WAREHOUSE_ALLOW_LOOPBACK" in failure(runs[0])


@pytest.mark.parametrize(
    ("host", "same_database"),
    [("127.0.0.1", True), ("localhost", True), ("127.0.0.1", False)],
    ids=["by-address", "by-another-host-spelling", "another-database-of-the-cluster"],
)
def test_the_state_cluster_is_refused_by_identity(
    open_loopback_fleet: Fleet, host: str, same_database: bool
) -> None:
    fleet = open_loopback_fleet
    before = _tokens(fleet)
    database = make_url(fleet.state_url).database if same_database else "postgres"
    assert database is not None
    runs = _attack(fleet, host, database)
    _assert_nothing_reached(fleet, runs, before)
    for run in runs:
        assert "Quarry's own state database cluster" in failure(run)


def test_a_warehouse_on_another_cluster_is_reached(open_loopback_fleet: Fleet) -> None:
    """The identity check is no blanket refusal: another cluster on the same host works."""
    fleet = open_loopback_fleet
    with private_cluster() as port:
        config = fleet.config_with(
            f"{{name: wh, type: postgres, host: 127.0.0.1, port: '{port}', user: postgres,"
            " database: postgres}"
        )
        fleet.add_workflows(
            {
                "warehouse": "tasks:\n  - {name: q, type: execute_sql, database: wh,"
                " sql_query: 'SELECT 41 + 1 AS answer'}\n"
            },
            config=config,
        )
        run = fleet.run("warehouse")
    assert run["state"] == "succeeded", run
    assert fleet.step_output(run["id"], "tasks.0")["rows"] == [{"answer": 42}]
    assert _tokens(fleet)  # the acme and globex tokens are still there
    assert ACME in {row[1] for row in _tokens(fleet)}
