"""What each warehouse entry of ``config.yml`` resolves to, by Oxy's rules (issue #21):
defaults per type, ``*_var`` only through the allow-list, clear errors naming the
database and field; types Quarry cannot open are named with their type; and the
registry imports no driver."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from quarry.definitions.models.config import (
    AirhouseDatabase,
    BigQueryDatabase,
    ClickHouseDatabase,
    DomoDatabase,
    DuckDbDatabase,
    MotherDuckDatabase,
    MysqlDatabase,
    RedshiftDatabase,
    SnowflakeDatabase,
)
from quarry.definitions.parse import parse_definition
from quarry.runtime.connectors.base import ConnectorError
from quarry.runtime.connectors.policy import ConnectorPolicy
from quarry.runtime.connectors.secrets import SecretNotAllowed, SecretResolver
from quarry.runtime.connectors.settings import (
    bigquery_settings,
    clickhouse_settings,
    connection_info,
    domo_settings,
    filter_settings,
    mysql_settings,
    snowflake_settings,
)
from quarry.runtime.connectors.support import unsupported_reason

ENV = {"CH_HOST": "https://ch.example.com", "CH_PW": "ch-secret", "MY_PORT": "3307"}


def resolver(policy: ConnectorPolicy | None = None) -> SecretResolver:
    return SecretResolver(policy or ConnectorPolicy.local(), "acme", ENV.get)


def clickhouse(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"host": "http://ch.local:8123", "user": "default", "database": "a"}
    config = ClickHouseDatabase(name="ch", type="clickhouse", **{**base, **fields})
    return clickhouse_settings(config, resolver())


def test_mysql_defaults_are_oxys() -> None:
    got = mysql_settings(MysqlDatabase(name="m", type="mysql"), resolver())
    assert got == {"host": "localhost", "port": 3306, "user": "root", "database": "mysql"}
    assert (
        mysql_settings(MysqlDatabase(name="m", type="mysql", port_var="MY_PORT"), resolver())[
            "port"
        ]
        == 3307
    )


def test_a_bad_port_names_the_database_and_field() -> None:
    with pytest.raises(ConnectorError, match="database 'm': the port is not a number") as err:
        mysql_settings(MysqlDatabase(name="m", type="mysql", port="x"), resolver())
    assert err.value.details["field"] == "port"


def test_redshift_and_airhouse_defaults_are_oxys() -> None:
    redshift = connection_info(RedshiftDatabase(name="r", type="redshift"), resolver())
    assert redshift == {"host": "localhost", "port": "5439", "user": "awsuser", "dbname": "dev"}
    airhouse = connection_info(AirhouseDatabase(name="a", type="airhouse"), resolver())
    assert airhouse["port"] == "5445" and airhouse["dbname"] == "airhouse"


def test_clickhouse_host_is_a_url_and_a_bare_host_means_http_8123() -> None:
    got = clickhouse(password_var="CH_PW")
    assert (got["host"], got["port"], got["secure"]) == ("ch.local", 8123, False)
    assert got["password"] == "ch-secret"
    secure = clickhouse(host=None, host_var="CH_HOST")
    assert (secure["host"], secure["port"], secure["secure"]) == ("ch.example.com", 8443, True)
    assert clickhouse(host="ch.internal")["port"] == 8123


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"host": None}, "needs 'host'"),
        ({"database": None}, "needs 'database'"),
        ({"host": "ftp://ch.local"}, "http:// or https:// URL"),
        ({"host": "http://u:p@ch.local:8123"}, "no path, query or credentials"),
        ({"host": "http://ch.local:99999"}, "port"),
    ],
)
def test_clickhouse_errors_name_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConnectorError, match=message):
        clickhouse(**fields)


def test_clickhouse_var_outside_the_allow_list_is_refused() -> None:
    config = ClickHouseDatabase(
        name="ch", type="clickhouse", host="h", user="u", database="d", password_var="CH_PW"
    )
    fleet = ConnectorPolicy(secret_env_allow={"*": ("ACME_*",)})
    with pytest.raises(SecretNotAllowed, match="password_var names 'CH_PW'"):
        clickhouse_settings(config, resolver(fleet))


def test_clickhouse_filters_become_prefixed_settings_from_their_defaults() -> None:
    config = ClickHouseDatabase(
        name="ch",
        type="clickhouse",
        settings_prefix="SQL_oxy_",
        filters={"tenant": {"type": "string", "default": "acme"}, "ids": {"default": [1, 2]}},
    )
    assert filter_settings(config) == {"SQL_oxy_ids": "[1,2]", "SQL_oxy_tenant": "acme"}
    required = ClickHouseDatabase(name="ch", type="clickhouse", filters={"t": {"type": "string"}})
    with pytest.raises(ConnectorError, match="filter 't' has no default") as err:
        filter_settings(required)
    assert err.value.details["field"] == "filters.t"


def test_types_quarry_cannot_open_say_why() -> None:
    assert unsupported_reason(MysqlDatabase(name="m", type="mysql")) is None
    assert unsupported_reason(BigQueryDatabase(name="bq", type="bigquery")) is None
    motherduck = MotherDuckDatabase(name="md", type="motherduck", token_var="MD_TOKEN")
    assert "needs DuckDB's motherduck extension" in str(unsupported_reason(motherduck))
    lake = DuckDbDatabase(
        name="lake",
        type="duckdb",
        data_path="s3://b/",
        schema_name="s",
        s3_secret_type="credential_chain",
    )
    assert "DuckLake" in str(unsupported_reason(lake))


def test_importing_the_registry_imports_no_driver() -> None:
    code = (
        "import sys, quarry.runtime.connectors.registry\n"
        "print(sorted(m for m in ('duckdb', 'psycopg', 'pymysql', 'clickhouse_connect')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_the_compile_warns_naming_file_database_and_type() -> None:
    parsed = parse_definition(
        "config.yml",
        b"databases:\n"
        b"  - name: md\n    type: motherduck\n    token_var: MD_TOKEN\n"
        b"  - name: local\n    type: duckdb\n    dataset: data/\n    data_path: s3://b/\n"
        b"    schema_name: s\n    s3_secret_type: credential_chain\n"
        b"  - name: shop\n    type: mysql\n"
        b"models: []\n",
    )
    unusable = [str(w) for w in parsed.warnings if "cannot be used" in w.message]
    assert unusable == [
        "config.yml:3:11: warning: database 'md' (type: motherduck) cannot be used: "
        "MotherDuck is not supported: it needs DuckDB's motherduck extension, which "
        "Quarry's DuckDB sandbox does not install or load"
    ]


def test_bigquery_needs_a_service_account_key_and_names_what_is_missing() -> None:
    def no_file(path: str) -> bytes:
        raise AssertionError(f"read {path}")

    bare = BigQueryDatabase(name="bq", type="bigquery")
    with pytest.raises(ConnectorError, match="needs key_path or key_path_var"):
        bigquery_settings(bare, resolver(), no_file)
    inline = BigQueryDatabase(name="bq", type="bigquery", key_path_var="BQ_KEY")
    env = {"BQ_KEY": '{"type": "service_account", "project_id": "p"}'}
    with pytest.raises(ConnectorError, match="missing private_key, client_email, token_uri"):
        bigquery_settings(inline, SecretResolver(ConnectorPolicy.local(), "acme", env.get), no_file)
    by_path = BigQueryDatabase(name="bq", type="bigquery", key_path="k.json", dataset="d")
    key = {k: "x" for k in ("type", "project_id", "private_key", "client_email", "token_uri")}
    got = bigquery_settings(by_path, resolver(), lambda path: json.dumps(key).encode())
    assert (got["key"], got["dataset"], got["api_endpoint"]) == (
        key,
        "d",
        "https://bigquery.googleapis.com",
    )


def test_domo_instance_and_dataset_cannot_redirect_the_request() -> None:
    env = {"DOMO_TOKEN": "t0k"}
    secrets = SecretResolver(ConnectorPolicy.local(), "acme", env.get)

    def domo(**fields: str) -> dict[str, object]:
        base = {
            "instance": "oxygen-ai",
            "dataset_id": "b7a2-f6c3",
            "developer_token_var": "DOMO_TOKEN",
        }
        return domo_settings(DomoDatabase(name="d", type="domo", **{**base, **fields}), secrets)

    assert domo() == {
        "base_url": "https://oxygen-ai.domo.com",
        "dataset_id": "b7a2-f6c3",
        "token": "t0k",
    }
    for instance in ("evil.com#", "a.b", "-x", "x/y"):
        with pytest.raises(ConnectorError, match="instance must be a Domo instance name"):
            domo(instance=instance)
    with pytest.raises(ConnectorError, match="dataset_id must be a Domo dataset id"):
        domo(dataset_id="../../admin")


def test_snowflake_auth_is_oxys_order_and_browser_login_is_refused() -> None:
    def sf(**fields: str) -> SnowflakeDatabase:
        base = {"account": "xy12345.us-east-1", "username": "u", "warehouse": "w", "database": "d"}
        return SnowflakeDatabase(name="sf", type="snowflake", **{**base, **fields})

    env = {"SF_PW": "pw"}
    secrets = SecretResolver(ConnectorPolicy.local(), "acme", env.get)
    got = snowflake_settings(sf(password_var="SF_PW"), secrets, lambda p: b"")
    assert (got["password"], got["host"], got["port"], got["protocol"]) == (
        "pw",
        "xy12345.us-east-1.snowflakecomputing.com",
        443,
        "https",
    )
    keyed = snowflake_settings(
        sf(private_key_path="k.pem", password_var="SF_PW"), secrets, lambda p: b"PEM"
    )
    assert keyed["private_key_pem"] == b"PEM" and "password" not in keyed
    with pytest.raises(ConnectorError, match="give password_var or private_key_path"):
        snowflake_settings(sf(), secrets, lambda p: b"")
    with pytest.raises(ConnectorError, match="account must be a Snowflake account identifier"):
        snowflake_settings(sf(account="evil.com/x", password_var="SF_PW"), secrets, lambda p: b"")
    filtered = SnowflakeDatabase(
        name="sf",
        type="snowflake",
        account="a",
        username="u",
        warehouse="w",
        database="d",
        password_var="SF_PW",
        filters={"t": {"default": "x"}},
    )
    with pytest.raises(ConnectorError, match="Snowflake filters are not supported yet"):
        snowflake_settings(filtered, secrets, lambda p: b"")
