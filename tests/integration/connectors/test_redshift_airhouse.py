"""``type: redshift`` and ``type: airhouse``: the Postgres connector with their own
defaults, tested against the real local Postgres (both speak its wire protocol);
the state-cluster check still applies, since a Postgres server gives its identity."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import psycopg
import pytest
from sqlalchemy.engine import make_url

from quarry.runtime.engine import SqlFailed, TableOutput
from quarry.store.identity import cluster_identity
from tests.integration.connectors.conftest import FLEET_LOOPBACK, FLEET_STRICT, ISOLATED, Workspace

CONFIG = """\
databases:
  - name: {name}
    type: {type}
    host_var: T_PGHOST
    port_var: T_PGPORT
    user_var: T_PGUSER
    database_var: T_PGDB
models: []
"""

WORKFLOW = """\
tasks:
  - name: q
    type: execute_sql
    database: {name}
    sql_query: SELECT {{{{ "it's" | param }}}}::text AS v, 2::int AS n
"""


@pytest.fixture
def pg_secrets(pg_database: str) -> dict[str, str]:
    url = make_url(pg_database)
    return {
        "T_PGHOST": url.host or "127.0.0.1",
        "T_PGPORT": str(url.port or 5432),
        "T_PGUSER": url.username or "postgres",
        "T_PGDB": url.database or "",
    }


@pytest.mark.parametrize("kind", ["redshift", "airhouse"])
def test_a_postgres_wire_warehouse_runs_bound_sql_inline_and_isolated(
    make_workspace: Callable[..., Workspace], pg_secrets: dict[str, str], kind: str
) -> None:
    ws = make_workspace(
        CONFIG.format(name="wh", type=kind), {"q": WORKFLOW.format(name="wh")}, pg_secrets
    )
    for policy in (None, ISOLATED):
        result = ws.run("workflows/q", policy=policy)
        output = result.outputs["q"]
        assert isinstance(output, TableOutput)
        assert output.table.to_pylist() == [{"v": "it's", "n": 2}]
    with pytest.raises(SqlFailed, match="loopback or link-local address, refused in fleet mode"):
        ws.run("workflows/q", policy=FLEET_STRICT)


def test_a_redshift_entry_pointing_at_the_state_cluster_is_refused(
    make_workspace: Callable[..., Workspace], pg_secrets: dict[str, str]
) -> None:
    info = pg_secrets
    with (
        psycopg.connect(
            host=info["T_PGHOST"],
            port=info["T_PGPORT"],
            user=info["T_PGUSER"],
            dbname=info["T_PGDB"],
        ) as conn,
        conn.cursor() as cur,
    ):
        state = cluster_identity(cur)
    ws = make_workspace(
        CONFIG.format(name="wh", type="redshift"), {"q": WORKFLOW.format(name="wh")}, info
    )
    with pytest.raises(SqlFailed, match="Quarry's own state database cluster"):
        ws.run("workflows/q", policy=replace(FLEET_LOOPBACK, state_cluster=state))


def test_a_redacted_user_in_a_login_error(
    make_workspace: Callable[..., Workspace], pg_secrets: dict[str, str]
) -> None:
    secrets = {**pg_secrets, "T_PGUSER": "no_such_role_7f3e"}
    ws = make_workspace(
        CONFIG.format(name="wh", type="redshift"), {"q": WORKFLOW.format(name="wh")}, secrets
    )
    with pytest.raises(SqlFailed) as failed:
        ws.run("workflows/q")
    assert "no_such_role_7f3e" not in str(failed.value)
    assert "[secret]" in str(failed.value)
