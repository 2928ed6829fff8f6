"""``type: clickhouse`` through the real clickhouse-connect client, against a local
HTTP server that executes with chDB (ClickHouse's engine): workflow steps with
server-side bound values, Arrow types, Oxy's filters as settings, the host guard,
secret redaction and the connector host process."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from decimal import Decimal

import pyarrow as pa
import pytest

from quarry.runtime.engine import SqlFailed, TableOutput
from quarry.runtime.engine.results import Output
from tests.integration.connectors.conftest import FLEET_STRICT, ISOLATED, Workspace
from tests.support.clickhouse_http import ClickHouseHttp

PASSWORD = "ch-pass-5f2a9e"

CONFIG = """\
databases:
  - name: events
    type: clickhouse
    host_var: T_CHHOST
    user: default
    password_var: T_CHPASSWORD
    database: shop
    settings_prefix: SQL_oxy_
    filters:
      tenant:
        type: string
        default: acme
models: []
"""

WORKFLOW = """\
variables:
  who:
    type: string
    default: "O'Brien"
tasks:
  - name: record
    type: execute_sql
    database: events
    sql_query: INSERT INTO audit (who) VALUES ({{ who | param }})
  - name: check
    type: execute_sql
    database: events
    sql_query: |
      SELECT count() AS n, any(audit.who) AS found FROM audit WHERE audit.who = {{ param(who) }}
  - name: types
    type: execute_sql
    database: events
    sql_query: SELECT * FROM typed ORDER BY id
"""


@pytest.fixture
def clickhouse() -> Iterator[ClickHouseHttp]:
    server = ClickHouseHttp(password=PASSWORD)
    server.setup("CREATE DATABASE shop")
    server.setup("CREATE TABLE shop.audit (who String) ENGINE = Memory")
    server.setup(
        "CREATE TABLE shop.typed (id Int64, d Decimal(12, 3), ts DateTime64(6, 'UTC'),"
        " n Nullable(String), a Array(Int32)) ENGINE = Memory"
    )
    server.setup(
        "INSERT INTO shop.typed VALUES (1, 12345.678, '2026-01-02 03:04:05.25', NULL, [1, 2]),"
        " (2, 0, '2026-01-02 00:00:00', 'x', [])"
    )
    yield server
    server.close()


@pytest.fixture
def events(make_workspace: Callable[..., Workspace], clickhouse: ClickHouseHttp) -> Workspace:
    secrets = {"T_CHHOST": clickhouse.url, "T_CHPASSWORD": PASSWORD}
    return make_workspace(CONFIG, {"audit": WORKFLOW}, secrets)


def table(output: Output) -> pa.Table:
    assert isinstance(output, TableOutput)
    return output.table


@pytest.mark.parametrize("isolated", [False, True], ids=["inline", "connector-host"])
def test_a_workflow_binds_values_server_side_and_gets_typed_arrow(
    events: Workspace, clickhouse: ClickHouseHttp, isolated: bool
) -> None:
    attack = "x'); DROP TABLE audit; --"
    result = events.run("workflows/audit", {"who": attack}, policy=ISOLATED if isolated else None)
    assert table(result.outputs["check"]).to_pylist() == [{"n": 1, "found": attack}]
    insert = next(r for r in clickhouse.requests if r.query.startswith("INSERT"))
    assert insert.query == "INSERT INTO audit (who) VALUES ({quarry_p0:String})"
    # The value never entered the text: it travels as param_quarry_p0, in the escaped
    # form ClickHouse's HTTP interface reads (and the row above holds it exactly).
    assert insert.params == {"quarry_p0": attack.replace("'", "\\'")}
    assert insert.settings["SQL_oxy_tenant"] == "acme"  # Oxy's filter, as a setting
    typed = table(result.outputs["types"])
    assert typed.schema.field("d").type == pa.decimal128(12, 3)
    assert typed.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    first, second = typed.to_pylist()
    assert first == {
        "id": 1,
        "d": Decimal("12345.678"),
        "ts": dt.datetime(2026, 1, 2, 3, 4, 5, 250000, tzinfo=dt.UTC),
        "n": None,
        "a": [1, 2],
    }
    assert (second["n"], second["a"]) == ("x", [])


def test_fleet_mode_refuses_a_loopback_host(events: Workspace, clickhouse: ClickHouseHttp) -> None:
    with pytest.raises(SqlFailed, match="loopback or link-local address, refused in fleet mode"):
        events.run("workflows/audit", policy=FLEET_STRICT)
    assert clickhouse.requests == []  # refused before any request


def test_a_secret_is_redacted_from_the_server_error(events: Workspace) -> None:
    events.secrets["T_CHPASSWORD"] = "wrong-but-secret"
    for policy in (None, ISOLATED):
        with pytest.raises(SqlFailed, match="AUTHENTICATION_FAILED") as failed:
            events.run("workflows/audit", policy=policy)
        message = str(failed.value)
        assert "127.0.0.1" not in message  # the host came from host_var: a secret
        assert "wrong-but-secret" not in message


def test_sql_errors_name_the_step(events: Workspace, clickhouse: ClickHouseHttp) -> None:
    clickhouse.setup("DROP TABLE shop.audit")
    with pytest.raises(SqlFailed, match=r"step tasks.0 \(record\): .*UNKNOWN_TABLE"):
        events.run("workflows/audit")
