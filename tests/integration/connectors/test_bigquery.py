"""``type: bigquery`` through the real google-cloud-bigquery client (and google-auth's
service-account flow), against a local server speaking the BigQuery REST calls the
client makes (``tests/support/bigquery_rest.py``, executing with DuckDB)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from quarry.runtime.connectors.settings import BIGQUERY_ENDPOINT_ENV
from quarry.runtime.engine import SqlFailed, TableOutput
from quarry.runtime.engine.results import Output
from tests.integration.connectors.conftest import FLEET_STRICT, ISOLATED, Workspace
from tests.support.bigquery_rest import BigQueryRest

CONFIG = """\
databases:
  - name: bq
    type: bigquery
    key_path_var: T_BQ_KEY
    dataset: sales
    dry_run_limit: 5000
models: []
"""

WORKFLOW = """\
variables:
  who:
    type: string
    default: "O'Brien"
tasks:
  - name: check
    type: execute_sql
    database: bq
    sql_query: |
      SELECT count(*) AS n, {{ who | param }} AS who, {{ 3 | param }} * 2 AS six
      FROM orders WHERE customer = {{ param(who) }}
  - name: types
    type: execute_sql
    database: bq
    sql_query: SELECT * FROM orders ORDER BY id
"""


@pytest.fixture
def bigquery(monkeypatch: pytest.MonkeyPatch) -> Iterator[BigQueryRest]:
    server = BigQueryRest()
    server.db.execute(
        "SET TimeZone = 'UTC'; CREATE SCHEMA sales;"
        " CREATE TABLE sales.orders (id BIGINT, customer VARCHAR, amount DECIMAL(12, 3),"
        " placed TIMESTAMPTZ, tags VARCHAR[], day DATE);"
        " INSERT INTO sales.orders VALUES"
        " (1, 'O''Brien', 12.5, '2026-01-02 03:04:05.25+00', ['a', 'b'], '2026-01-02'),"
        " (2, 'x', NULL, NULL, [], NULL)"
    )
    monkeypatch.setenv(BIGQUERY_ENDPOINT_ENV, server.url)
    yield server
    server.close()


@pytest.fixture
def bq(make_workspace: Callable[..., Workspace], bigquery: BigQueryRest) -> Workspace:
    return make_workspace(CONFIG, {"orders": WORKFLOW}, {"T_BQ_KEY": json.dumps(bigquery.key())})


def table(output: Output) -> pa.Table:
    assert isinstance(output, TableOutput)
    return output.table


@pytest.mark.parametrize("isolated", [False, True], ids=["inline", "connector-host"])
def test_a_workflow_binds_parameters_and_gets_typed_arrow(
    bq: Workspace, bigquery: BigQueryRest, isolated: bool
) -> None:
    result = bq.run("workflows/orders", policy=ISOLATED if isolated else None)
    assert table(result.outputs["check"]).to_pylist() == [{"n": 1, "who": "O'Brien", "six": 6}]
    query = bigquery.ran()[0]
    assert query["parameterMode"] == "POSITIONAL"
    assert "O'Brien" not in query["query"]  # bound, not spliced
    assert query["defaultDataset"]["datasetId"] == "sales"
    types = table(result.outputs["types"])
    assert types.schema.field("placed").type == pa.timestamp("us", tz="UTC")
    first, second = types.to_pylist()
    assert first["amount"] == Decimal("12.5")
    assert first["placed"] == dt.datetime(2026, 1, 2, 3, 4, 5, 250000, tzinfo=dt.UTC)
    assert (first["tags"], first["day"]) == (["a", "b"], dt.date(2026, 1, 2))
    assert (second["amount"], second["placed"], second["tags"]) == (None, None, [])


def test_dry_run_limit_refuses_a_statement_that_would_scan_more(
    bq: Workspace, bigquery: BigQueryRest
) -> None:
    bigquery.dry_run_bytes = 10**12
    with pytest.raises(SqlFailed, match="would process 1000000000000 bytes, over the dry_run"):
        bq.run("workflows/orders")
    assert bigquery.ran() == []  # never ran


def test_fleet_mode_refuses_a_loopback_endpoint(bq: Workspace, bigquery: BigQueryRest) -> None:
    with pytest.raises(SqlFailed, match="loopback or link-local address, refused in fleet mode"):
        bq.run("workflows/orders", policy=FLEET_STRICT)
    assert bigquery.calls == []


def test_key_path_is_read_only_where_the_operator_allows(
    make_workspace: Callable[..., Workspace], bigquery: BigQueryRest, tmp_path: Path
) -> None:
    key_file = tmp_path / "bq-key.json"
    key_file.write_text(json.dumps(bigquery.key()))
    absolute = CONFIG.replace("key_path_var: T_BQ_KEY", f"key_path: {key_file}")
    ws = make_workspace(absolute, {"orders": WORKFLOW}, {})
    assert table(ws.run("workflows/orders").outputs["check"]).num_rows == 1  # local mode
    with pytest.raises(SqlFailed, match="key_path names a file that is not part of the revision"):
        ws.run("workflows/orders", policy=ISOLATED)  # fleet mode: not a file of the worker
    relative = CONFIG.replace("key_path_var: T_BQ_KEY", "key_path: keys/missing.json")
    ws = make_workspace(relative, {"orders": WORKFLOW}, {})
    with pytest.raises(SqlFailed, match="key_path names a file that is not part of the revision"):
        ws.run("workflows/orders")


def test_errors_are_the_server_s_and_redacted(bq: Workspace, bigquery: BigQueryRest) -> None:
    bigquery.db.execute("DROP TABLE sales.orders")
    with pytest.raises(SqlFailed, match=r"step tasks.0 \(check\): .*orders does not exist") as err:
        bq.run("workflows/orders")
    assert bigquery.url not in str(err.value)  # not the request URL
    bq.secrets["T_BQ_KEY"] = '{"type": "service_account"}'
    with pytest.raises(SqlFailed, match=r"not a service-account key .*missing project_id"):
        bq.run("workflows/orders")
