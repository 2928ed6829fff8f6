"""Opt-in: the BigQuery and Snowflake connectors against the real services, when an
engineer puts credentials in the environment (CI has none and skips these; the
local protocol servers of ``test_bigquery.py`` / ``test_snowflake.py`` always run).

- BigQuery: ``LIVE_BIGQUERY_KEY`` (a service-account key's JSON).
- Snowflake: ``LIVE_SNOWFLAKE_ACCOUNT``, ``LIVE_SNOWFLAKE_USER``,
  ``LIVE_SNOWFLAKE_PASSWORD``, ``LIVE_SNOWFLAKE_WAREHOUSE``, ``LIVE_SNOWFLAKE_DATABASE``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from quarry.runtime.engine import TableOutput
from tests.integration.connectors.conftest import Workspace

WORKFLOW = """\
tasks:
  - name: q
    type: execute_sql
    database: live
    sql_query: SELECT {{ "it's" | param }} AS v, {{ 41 | param }} + 1 AS n
"""
SNOWFLAKE_ENV = ("ACCOUNT", "USER", "PASSWORD", "WAREHOUSE", "DATABASE")


def check(ws: Workspace) -> None:
    output = ws.run("workflows/live").outputs["q"]
    assert isinstance(output, TableOutput)
    rows = [{k.lower(): v for k, v in row.items()} for row in output.table.to_pylist()]
    assert rows == [{"v": "it's", "n": 42}]


@pytest.mark.skipif("LIVE_BIGQUERY_KEY" not in os.environ, reason="no LIVE_BIGQUERY_KEY")
def test_live_bigquery(make_workspace: Callable[..., Workspace]) -> None:
    config = "databases:\n  - name: live\n    type: bigquery\n    key_path_var: T_KEY\nmodels: []\n"
    secrets = {"T_KEY": os.environ["LIVE_BIGQUERY_KEY"]}
    check(make_workspace(config, {"live": WORKFLOW}, secrets))


@pytest.mark.skipif(
    not all(f"LIVE_SNOWFLAKE_{k}" in os.environ for k in SNOWFLAKE_ENV),
    reason="no LIVE_SNOWFLAKE_* credentials",
)
def test_live_snowflake(make_workspace: Callable[..., Workspace]) -> None:
    env = {k: os.environ[f"LIVE_SNOWFLAKE_{k}"] for k in SNOWFLAKE_ENV}
    config = (
        "databases:\n  - name: live\n    type: snowflake\n"
        f"    account: {env['ACCOUNT']}\n    username: {env['USER']}\n"
        "    password_var: T_PASSWORD\n"
        f"    warehouse: {env['WAREHOUSE']}\n    database: {env['DATABASE']}\nmodels: []\n"
    )
    check(make_workspace(config, {"live": WORKFLOW}, {"T_PASSWORD": env["PASSWORD"]}))
