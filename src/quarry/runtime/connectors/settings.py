"""What a ``config.yml`` database resolves to: plain values a connector can open.

Kept apart from the connector modules so that reading a configuration never imports
a driver (``quarry run`` pays only for the drivers its databases use), and so that
the resolved values can travel to the connector host (``isolated.py``) as plain data.

Every ``*_var`` goes through :class:`~quarry.runtime.connectors.secrets.SecretResolver`
(the operator's allow-list; the value remembered for redaction). Plain values and
Oxy's defaults follow :meth:`~quarry.definitions.models.config._Resolved.setting`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from quarry.definitions.models.config import (
    AirhouseDatabase,
    BigQueryDatabase,
    ClickHouseDatabase,
    DomoDatabase,
    MysqlDatabase,
    PostgresDatabase,
    RedshiftDatabase,
    SnowflakeDatabase,
)
from quarry.runtime.connectors.base import ConnectorError
from quarry.runtime.connectors.secrets import SecretResolver

ServerDatabase = PostgresDatabase | RedshiftDatabase | AirhouseDatabase | MysqlDatabase
Resolved = ServerDatabase | ClickHouseDatabase


def read_setting(config: Resolved, key: str, secrets: SecretResolver) -> str | None:
    """``key`` by Oxy's rule (value, then ``key_var`` through ``secrets``, then default)."""

    def lookup(variable: str) -> str:
        return secrets.resolve(config.name, f"{key}_var", variable)

    return config.setting(key, lookup)


def connection_info(config: ServerDatabase, secrets: SecretResolver) -> dict[str, Any]:
    """psycopg keyword arguments for a Postgres-wire database (Postgres, Redshift,
    Airhouse), read as Oxy reads them: a plain value beats its ``*_var``; otherwise
    the type's default (Postgres localhost:5432 ``postgres``/``postgres``, Redshift
    localhost:5439 ``awsuser``/``dev``, Airhouse localhost:5445 ``admin``/``airhouse``)."""
    info: dict[str, Any] = {
        "host": read_setting(config, "host", secrets),
        "port": read_setting(config, "port", secrets),
        "user": read_setting(config, "user", secrets),
        "dbname": read_setting(config, "database", secrets),
        "password": read_setting(config, "password", secrets),
    }
    return {k: v for k, v in info.items() if v is not None}


def mysql_settings(config: MysqlDatabase, secrets: SecretResolver) -> dict[str, Any]:
    """PyMySQL keyword arguments (Oxy's defaults: localhost:3306, ``root``, ``mysql``)."""
    info = connection_info(config, secrets)
    if "dbname" in info:
        info["database"] = info.pop("dbname")
    info["port"] = port_number(config.name, info.get("port"), 3306)
    return info


def port_number(database: str, port: Any, default: int) -> int:
    if port is None or port == "":
        return default
    try:
        value = int(port)
    except (TypeError, ValueError):
        raise ConnectorError(
            f"database {database!r}: the port is not a number", database=database, field="port"
        ) from None
    if not 0 < value < 65536:
        raise ConnectorError(
            f"database {database!r}: the port is out of range", database=database, field="port"
        )
    return value


def clickhouse_settings(config: ClickHouseDatabase, secrets: SecretResolver) -> dict[str, Any]:
    """clickhouse-connect arguments from Oxy's fields.

    ``host`` is a URL as Oxy's docs write it (``http://clickhouse.local:8123``); a bare
    host name means HTTP on 8123. Oxy has no default for host, user or database, so
    each must be given (as a value or a variable). ``filters`` and ``settings_prefix``
    become ClickHouse custom settings (see :func:`filter_settings`).
    """
    name = config.name
    values: dict[str, str | None] = {
        key: read_setting(config, key, secrets) for key in ("host", "user", "password", "database")
    }
    for key in ("host", "user", "database"):
        if not values[key]:
            raise ConnectorError(
                f"database {name!r}: a ClickHouse database needs '{key}' (or '{key}_var')",
                database=name,
                field=key,
            )
    url = str(values["host"])
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectorError(
            f"database {name!r}: host must be an http:// or https:// URL of the ClickHouse "
            "server (its HTTP interface, e.g. http://clickhouse.local:8123)",
            database=name,
            field="host",
        )
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise ConnectorError(
            f"database {name!r}: host must be scheme://host:port only (no path, query or "
            "credentials: give user and password_var)",
            database=name,
            field="host",
        )
    secure = parts.scheme == "https"
    try:
        given_port = parts.port
    except ValueError:
        given_port = -1
    port = port_number(name, given_port, 8443 if secure else 8123)
    return {
        "host": parts.hostname,
        "port": port,
        "secure": secure,
        "username": values["user"],
        "password": values["password"] or "",
        "database": values["database"],
        "role": config.role,
        "settings": filter_settings(config),
    }


def filter_settings(config: ClickHouseDatabase) -> dict[str, str]:
    """Oxy's ``filters`` as ClickHouse custom settings: ``<settings_prefix><filter>``.

    In Oxy, ``filters`` is a JSON Schema per filter and a request's session filters
    give the values, which row policies read with ``getSetting``. Quarry has no
    request-time session filters yet, so each filter's schema ``default`` is sent;
    a filter without a default cannot be satisfied and is refused, as Oxy refuses a
    missing required filter, rather than running unfiltered.
    """
    if not config.filters:
        return {}
    prefix = config.settings_prefix or "SQL_"
    out: dict[str, str] = {}
    for key, schema in sorted(config.filters.items()):
        if "default" not in schema:
            raise ConnectorError(
                f"database {config.name!r}: filter {key!r} has no default, and Quarry has no "
                "session filters to give it a value (row-level security would not apply)",
                database=config.name,
                field=f"filters.{key}",
            )
        out[f"{prefix}{key}"] = _setting_text(schema["default"])
    return out


def _setting_text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return "[" + ",".join(_literal(v) for v in value) + "]"
    return str(value)


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


# The BigQuery REST endpoint; an operator may point it elsewhere (an emulator, a
# private endpoint). Not a workspace setting: a workspace cannot move its API.
BIGQUERY_ENDPOINT_ENV = "QUARRY_BIGQUERY_API_ENDPOINT"
BIGQUERY_ENDPOINT = "https://bigquery.googleapis.com"
_KEY_FIELDS = ("type", "project_id", "private_key", "client_email", "token_uri")


def bigquery_settings(
    config: BigQueryDatabase, secrets: SecretResolver, read_file: Callable[[str], bytes]
) -> dict[str, Any]:
    """The service-account key (parsed), dataset, dry-run cap and API endpoint.

    ``key_path`` is a file of the workspace (or, where the operator allows it, an
    absolute path), read with ``read_file``. ``key_path_var`` names a secret holding
    the key file's path or, as deployments often mount it, the key's JSON itself.
    """
    name = config.name
    if config.key_path is not None:
        raw = read_file(config.key_path)
    elif config.key_path_var is not None:
        value = secrets.resolve(name, "key_path_var", config.key_path_var)
        raw = value.encode() if value.lstrip().startswith("{") else read_file(value)
    else:
        raise ConnectorError(
            f"database {name!r}: a BigQuery database needs key_path or key_path_var "
            "(a service-account key file)",
            database=name,
            field="key_path",
        )
    try:
        key = json.loads(raw)
    except ValueError:
        key = None
    missing = [k for k in _KEY_FIELDS if not isinstance(key, dict) or not key.get(k)]
    if missing:
        raise ConnectorError(
            f"database {name!r}: the key file is not a service-account key (JSON with "
            f"{', '.join(_KEY_FIELDS)}; missing {', '.join(missing)})",
            database=name,
            field="key_path",
        )
    assert isinstance(key, dict)
    return {
        "key": key,
        "dataset": config.dataset,
        "dry_run_limit": config.dry_run_limit,
        "api_endpoint": os.environ.get(BIGQUERY_ENDPOINT_ENV) or BIGQUERY_ENDPOINT,
    }


# Domo's API base URL per instance; an operator may point it elsewhere (a proxy, a
# test server). Not a workspace setting.
DOMO_BASE_URL_ENV = "QUARRY_DOMO_BASE_URL"
DOMO_BASE_URL = "https://{instance}.domo.com"
# A host label: nothing that could turn the URL into another host or a path.
_DOMO_INSTANCE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def domo_settings(config: DomoDatabase, secrets: SecretResolver) -> dict[str, Any]:
    """The API base URL of ``instance``, the dataset and the developer token."""
    name = config.name
    if not _DOMO_INSTANCE.match(config.instance):
        raise ConnectorError(
            f"database {name!r}: instance must be a Domo instance name (letters, digits "
            "and '-', as in <instance>.domo.com)",
            database=name,
            field="instance",
        )
    if not re.fullmatch(r"[A-Za-z0-9-]+", config.dataset_id):
        raise ConnectorError(
            f"database {name!r}: dataset_id must be a Domo dataset id (letters, digits, '-')",
            database=name,
            field="dataset_id",
        )
    template = os.environ.get(DOMO_BASE_URL_ENV) or DOMO_BASE_URL
    return {
        "base_url": template.replace("{instance}", config.instance),
        "dataset_id": config.dataset_id,
        "token": secrets.resolve(name, "developer_token_var", config.developer_token_var),
    }


# Where Snowflake accounts are reached; an operator may point elsewhere (a private
# link, a test server): scheme://host:port, "{account}" replaced. Not a workspace setting.
SNOWFLAKE_URL_ENV = "QUARRY_SNOWFLAKE_URL"
SNOWFLAKE_URL = "https://{account}.snowflakecomputing.com:443"
_SNOWFLAKE_ACCOUNT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


def snowflake_settings(
    config: SnowflakeDatabase, secrets: SecretResolver, read_file: Callable[[str], bytes]
) -> dict[str, Any]:
    """Connection values and the authentication Oxy would use: a key pair when
    ``private_key_path`` is given, else the password (``password`` or
    ``password_var``); Oxy's third way, a browser login, needs a person at a browser
    on the worker and is refused."""
    name = config.name
    if not _SNOWFLAKE_ACCOUNT.match(config.account) or ".." in config.account:
        raise ConnectorError(
            f"database {name!r}: account must be a Snowflake account identifier "
            "(e.g. xy12345 or xy12345.us-east-1)",
            database=name,
            field="account",
        )
    if config.filters:
        raise ConnectorError(
            f"database {name!r}: Snowflake filters are not supported yet (row-level "
            "security would not apply; remove 'filters' or use another database)",
            database=name,
            field="filters",
        )
    url = urlsplit(
        (os.environ.get(SNOWFLAKE_URL_ENV) or SNOWFLAKE_URL).replace("{account}", config.account)
    )
    out: dict[str, Any] = {
        "account": config.account,
        "user": config.username,
        "warehouse": config.warehouse,
        "database": config.database,
        "schema": config.schema_,
        "role": config.role,
        "host": url.hostname,
        "port": url.port or (443 if url.scheme == "https" else 80),
        "protocol": url.scheme,
    }
    if config.private_key_path is not None:
        out["private_key_pem"] = read_file(config.private_key_path)
    elif config.password is not None:
        out["password"] = config.password
    elif config.password_var is not None:
        out["password"] = secrets.resolve(name, "password_var", config.password_var)
    else:
        raise ConnectorError(
            f"database {name!r}: give password_var or private_key_path (Oxy's browser "
            "login needs a person at a browser, which a Quarry worker does not have)",
            database=name,
            field="password_var",
        )
    return out
