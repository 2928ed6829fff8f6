"""``type: snowflake`` through the real snowflake-connector-python against a local
server speaking the Snowflake REST calls it makes (``tests/support/snowflake_rest.py``,
executing with DuckDB): password and key-pair logins, server-side bindings, Arrow
types, the guard, redaction and the connector host process."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from quarry.runtime.connectors.settings import SNOWFLAKE_URL_ENV
from quarry.runtime.engine import SqlFailed, TableOutput
from quarry.runtime.engine.results import Output
from tests.integration.connectors.conftest import FLEET_STRICT, ISOLATED, Workspace
from tests.support.snowflake_rest import SnowflakeRest

PASSWORD = "sf-pass-41d9"

CONFIG = """\
databases:
  - name: sf
    type: snowflake
    account: xy12345.us-east-1
    username: analyst
    password_var: T_SF_PASSWORD
    warehouse: COMPUTE_WH
    database: ANALYTICS
    role: ANALYST
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
    database: sf
    sql_query: |
      SELECT count(*) AS n, {{ who | param }} AS who FROM orders WHERE customer = {{ param(who) }}
  - name: types
    type: execute_sql
    database: sf
    sql_query: SELECT * FROM orders ORDER BY id
"""


@pytest.fixture
def snowflake(monkeypatch: pytest.MonkeyPatch) -> Iterator[SnowflakeRest]:
    server = SnowflakeRest(user="analyst", password=PASSWORD)
    server.db.execute(
        "SET TimeZone = 'UTC';"
        " CREATE TABLE orders (id BIGINT, customer VARCHAR, amount DECIMAL(12, 2),"
        " placed TIMESTAMP, day DATE, paid BOOLEAN, ratio DOUBLE);"
        " INSERT INTO orders VALUES"
        " (1, 'O''Brien', 12.5, '2026-01-02 03:04:05.25', '2026-01-02', true, 0.5),"
        " (2, 'x', NULL, NULL, NULL, NULL, NULL)"
    )
    monkeypatch.setenv(SNOWFLAKE_URL_ENV, server.url)
    yield server
    server.close()


@pytest.fixture
def sf(make_workspace: Callable[..., Workspace], snowflake: SnowflakeRest) -> Workspace:
    return make_workspace(CONFIG, {"orders": WORKFLOW}, {"T_SF_PASSWORD": PASSWORD})


def table(output: Output) -> pa.Table:
    assert isinstance(output, TableOutput)
    return output.table


@pytest.mark.parametrize("isolated", [False, True], ids=["inline", "connector-host"])
def test_a_workflow_binds_values_server_side_and_gets_typed_arrow(
    sf: Workspace, snowflake: SnowflakeRest, isolated: bool
) -> None:
    result = sf.run("workflows/orders", policy=ISOLATED if isolated else None)
    assert table(result.outputs["check"]).to_pylist() == [{"N": 1, "WHO": "O'Brien"}]
    query = snowflake.queries[0]
    assert "O'Brien" not in query["sqlText"]  # bound, not spliced
    assert query["bindings"]["1"] == {"type": "TEXT", "value": "O'Brien"}
    login = snowflake.logins[0]
    assert (login["ACCOUNT_NAME"], login["LOGIN_NAME"]) == ("xy12345", "analyst")
    types = table(result.outputs["types"])
    assert types.schema.field("AMOUNT").type == pa.decimal128(12, 2)
    first, second = types.to_pylist()
    assert first == {
        "ID": 1,
        "CUSTOMER": "O'Brien",
        "AMOUNT": Decimal("12.50"),
        "PLACED": dt.datetime(2026, 1, 2, 3, 4, 5, 250000),
        "DAY": dt.date(2026, 1, 2),
        "PAID": True,
        "RATIO": 0.5,
    }
    assert all(v is None for k, v in second.items() if k not in ("ID", "CUSTOMER"))


def test_key_pair_login_signs_with_the_workspace_key(
    make_workspace: Callable[..., Workspace], snowflake: SnowflakeRest, tmp_path: Path
) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    snowflake.public_key = private.public_key()
    key_file = tmp_path / "sf-key.pem"
    key_file.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    config = CONFIG.replace("password_var: T_SF_PASSWORD", f"private_key_path: {key_file}")
    ws = make_workspace(config, {"orders": WORKFLOW}, {})
    assert table(ws.run("workflows/orders").outputs["check"]).num_rows == 1
    assert snowflake.logins[-1]["AUTHENTICATOR"] == "SNOWFLAKE_JWT"
    assert "PASSWORD" not in snowflake.logins[-1]


def test_fleet_mode_refuses_a_loopback_account_host(
    sf: Workspace, snowflake: SnowflakeRest
) -> None:
    with pytest.raises(SqlFailed, match="loopback or link-local address, refused in fleet mode"):
        sf.run("workflows/orders", policy=FLEET_STRICT)
    assert snowflake.logins == []


def test_a_failed_login_and_a_sql_error_name_the_step(
    sf: Workspace, snowflake: SnowflakeRest
) -> None:
    snowflake.db.execute("DROP TABLE orders")
    with pytest.raises(SqlFailed, match=r"step tasks.0 \(check\): .*SQL compilation error"):
        sf.run("workflows/orders")
    sf.secrets["T_SF_PASSWORD"] = "wrong-secret-77"
    with pytest.raises(SqlFailed, match="Incorrect username or password") as failed:
        sf.run("workflows/orders", policy=ISOLATED)
    assert "wrong-secret-77" not in str(failed.value)


def test_without_password_or_key_the_browser_login_is_refused(
    make_workspace: Callable[..., Workspace], snowflake: SnowflakeRest
) -> None:
    config = CONFIG.replace("    password_var: T_SF_PASSWORD\n", "")
    ws = make_workspace(config, {"orders": WORKFLOW}, {})
    with pytest.raises(SqlFailed, match="give password_var or private_key_path"):
        ws.run("workflows/orders")
    assert snowflake.logins == []
