"""``type: mysql`` on the real MariaDB at 127.0.0.1:3306: workflows' ``execute_sql``
steps with bound values, Arrow types, the host guard, secret redaction, the
connector host process, and cancellation by ``KILL QUERY``."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pymysql
import pytest

from quarry.runtime.connectors.base import BoundSql, ConnectorError
from quarry.runtime.connectors.mysql import MysqlConnector
from quarry.runtime.connectors.policy import ConnectorPolicy
from quarry.runtime.engine import SqlFailed, TableOutput
from quarry.runtime.engine.results import Output
from tests.integration.connectors.conftest import FLEET_STRICT, ISOLATED, Workspace


def admin_connection(**extra: Any) -> pymysql.connections.Connection[Any]:
    return pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", **extra)


CONFIG = """\
databases:
  - name: shop
    type: mysql
    host_var: T_MYHOST
    user_var: T_MYUSER
    password_var: T_MYPASSWORD
    database_var: T_MYDB
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
    database: shop
    sql_query: |
      INSERT INTO audit (who, note) VALUES ({{ who | param }}, 'it''s 100% done')
  - name: check
    type: execute_sql
    database: shop
    sql_query: |
      SELECT count(*) AS n, max(who) AS who FROM audit
      WHERE who = {{ param(who) }} AND note LIKE '%done'
  - name: types
    type: execute_sql
    database: shop
    sql_query: SELECT * FROM typed ORDER BY id
"""


@pytest.fixture
def mysql_db() -> Iterator[dict[str, str]]:
    """A database and a user of its own (with a password: the secret), dropped after."""
    suffix = uuid.uuid4().hex[:10]
    db, user, password = f"quarry_t_{suffix}", f"qt_{suffix}", f"pw-{uuid.uuid4().hex}"
    admin = admin_connection(autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{db}`")
            cur.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", (password,))
            cur.execute(f"GRANT ALL ON `{db}`.* TO '{user}'@'%'")
            cur.execute(f"USE `{db}`")
            cur.execute(
                "CREATE TABLE audit (id int auto_increment primary key, who text, note text)"
            )
            cur.execute(
                "CREATE TABLE typed (id int primary key, d decimal(12,3), ts timestamp(6) NULL,"
                " dtm datetime NULL, day date NULL, t time NULL, doc json NULL, b varbinary(8),"
                " big bigint, f double, name varchar(20) NULL)"
            )
            cur.execute("SET time_zone = '+00:00'")
            cur.execute(
                "INSERT INTO typed VALUES (1, 12345.678, '2026-01-02 03:04:05.250000',"
                " '2026-01-02 03:04:05', '2026-01-02', '12:30:00', '{\"a\": [1, 2]}',"
                " x'00ff', 9007199254740993, 1.5, 'ü'),"
                " (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
            )
        yield {"T_MYHOST": "127.0.0.1", "T_MYUSER": user, "T_MYPASSWORD": password, "T_MYDB": db}
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        admin.close()


@pytest.fixture
def shop(make_workspace: Callable[..., Workspace], mysql_db: dict[str, str]) -> Workspace:
    return make_workspace(CONFIG, {"audit": WORKFLOW}, mysql_db)


def table(output: Output) -> pa.Table:
    assert isinstance(output, TableOutput)
    return output.table


def audit_rows(info: dict[str, str]) -> list[tuple[object, ...]]:
    conn = admin_connection(database=info["T_MYDB"])
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT who, note FROM audit ORDER BY id")
            return list(cur.fetchall())
    finally:
        conn.close()


def check_run(shop: Workspace, mysql_db: dict[str, str], policy: ConnectorPolicy | None) -> None:
    result = shop.run("workflows/audit", policy=policy)
    assert table(result.outputs["check"]).to_pylist() == [{"n": 1, "who": "O'Brien"}]
    typed = table(result.outputs["types"])
    assert typed.schema.field("d").type == pa.decimal128(12, 3)
    assert typed.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert typed.schema.field("dtm").type == pa.timestamp("us")
    assert typed.schema.field("b").type == pa.binary()
    first, second = typed.to_pylist()
    assert first["d"] == Decimal("12345.678")
    assert first["ts"] == dt.datetime(2026, 1, 2, 3, 4, 5, 250000, tzinfo=dt.UTC)
    assert first["dtm"] == dt.datetime(2026, 1, 2, 3, 4, 5)
    assert first["day"] == dt.date(2026, 1, 2)
    assert first["t"] == dt.timedelta(hours=12, minutes=30)
    assert first["doc"] == '{"a": [1, 2]}'
    assert first["b"] == b"\x00\xff"
    assert first["big"] == 9007199254740993  # exact: not through a float
    assert (first["f"], first["name"]) == (1.5, "ü")
    assert all(value is None for key, value in second.items() if key != "id")


def test_a_workflow_binds_values_and_gets_typed_arrow(
    shop: Workspace, mysql_db: dict[str, str]
) -> None:
    check_run(shop, mysql_db, None)
    attack = "x'); DELETE FROM audit; --"
    shop.run("workflows/audit", {"who": attack})
    assert audit_rows(mysql_db) == [("O'Brien", "it's 100% done"), (attack, "it's 100% done")]


def test_the_same_workflow_runs_in_the_connector_host_process(
    shop: Workspace, mysql_db: dict[str, str]
) -> None:
    check_run(shop, mysql_db, ISOLATED)


def test_fleet_mode_refuses_a_loopback_host_before_connecting(shop: Workspace) -> None:
    with pytest.raises(SqlFailed, match="loopback or link-local address, refused in fleet mode"):
        shop.run("workflows/audit", policy=FLEET_STRICT)


def test_a_secret_is_redacted_from_the_driver_error(
    shop: Workspace, mysql_db: dict[str, str]
) -> None:
    user = mysql_db["T_MYUSER"]
    shop.secrets["T_MYPASSWORD"] = "wrong"
    for policy in (None, ISOLATED):
        with pytest.raises(SqlFailed) as failed:
            shop.run("workflows/audit", policy=policy)
        message = str(failed.value)
        assert "Access denied for user '[secret]'" in message
        assert user not in message


def test_a_secret_outside_the_allow_list_is_not_read(shop: Workspace) -> None:
    fleet = ConnectorPolicy(
        fleet=True, warehouse_allow_loopback=True, secret_env_allow={"*": ("T_MYHOST",)}
    )
    with pytest.raises(SqlFailed, match="user_var names 'T_MYUSER', which this tenant may not"):
        shop.run("workflows/audit", policy=fleet)


def test_interrupt_kills_the_running_statement(mysql_db: dict[str, str]) -> None:
    settings = {
        "host": "127.0.0.1",
        "port": 3306,
        "user": mysql_db["T_MYUSER"],
        "password": mysql_db["T_MYPASSWORD"],
        "database": mysql_db["T_MYDB"],
    }
    connector = MysqlConnector("shop", settings, policy=ConnectorPolicy.local())
    marker = f"quarry-wait-{uuid.uuid4().hex}"
    failure: list[BaseException] = []
    results: list[pa.Table] = []

    def slow() -> None:
        try:
            results.append(connector.query(BoundSql(f"SELECT SLEEP(600) AS '{marker}'")))
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=slow)
    worker.start()
    admin = admin_connection(autocommit=True)
    try:
        with admin.cursor() as cur:
            statement = f"SELECT SLEEP(600) AS '{marker}'"
            while True:  # until the statement is on the server
                cur.execute(
                    "SELECT count(*) FROM information_schema.processlist WHERE info = %s",
                    (statement,),
                )
                row = cur.fetchone()
                if row is not None and row[0] == 1:
                    break
    finally:
        admin.close()
    connector.interrupt()
    worker.join(60)
    connector.close()
    assert not worker.is_alive()
    # A killed SLEEP() ends early with 1 (MariaDB) or an "interrupted" error (MySQL).
    if failure:
        assert isinstance(failure[0], ConnectorError), failure
    else:
        assert results[0].column(0).to_pylist() == [1]
