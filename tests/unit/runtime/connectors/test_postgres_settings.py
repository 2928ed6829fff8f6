"""The Postgres connection a ``config.yml`` entry gives, by Oxy's rules (issue #15):
a plain value beats its ``*_var``, Oxy's defaults fill the rest, and a ``*_var``
still resolves only through the operator's allow-list, its value redacted."""

from __future__ import annotations

from typing import Any

import pytest

from quarry.definitions.models.config import PostgresDatabase
from quarry.runtime.connectors.base import ConnectorError
from quarry.runtime.connectors.policy import ConnectorPolicy
from quarry.runtime.connectors.postgres import connection_info
from quarry.runtime.connectors.secrets import SecretNotAllowed, SecretResolver

ENV = {"PG_PASSWORD": "from-the-variable", "PG_HOST": "db.internal", "PG_PORT": "6543"}


def info(policy: ConnectorPolicy | None = None, **fields: Any) -> dict[str, Any]:
    config = PostgresDatabase(name="wh", type="postgres", **fields)
    resolver = SecretResolver(policy or ConnectorPolicy.local(), "acme", ENV.get)
    return connection_info(config, resolver)


def test_a_plain_password_beats_password_var() -> None:
    got = info(host="db", password="plain", password_var="PG_PASSWORD")
    assert got["password"] == "plain"


def test_a_plain_value_beats_its_var_for_every_field() -> None:
    got = info(host="db", host_var="PG_HOST", port="5433", port_var="PG_PORT")
    assert (got["host"], got["port"]) == ("db", "5433")


def test_oxy_defaults_fill_what_is_not_given() -> None:
    assert info() == {"host": "localhost", "port": "5432", "user": "postgres", "dbname": "postgres"}
    assert "password" not in info(host="db")  # Oxy has no default password


def test_a_var_alone_resolves_and_its_value_is_redacted() -> None:
    config = PostgresDatabase(
        name="wh", type="postgres", host_var="PG_HOST", password_var="PG_PASSWORD"
    )
    resolver = SecretResolver(ConnectorPolicy.local(), "acme", ENV.get)
    got = connection_info(config, resolver)
    assert (got["host"], got["password"]) == ("db.internal", "from-the-variable")
    assert got["port"] == "5432"
    redacted = resolver.redact("connection to db.internal failed for from-the-variable")
    assert "db.internal" not in redacted and "from-the-variable" not in redacted


def test_a_var_outside_the_allow_list_is_refused_naming_field_and_variable() -> None:
    fleet = ConnectorPolicy(secret_env_allow={"acme": ("ACME_*",)})
    with pytest.raises(SecretNotAllowed, match="password_var names 'PG_PASSWORD'"):
        info(fleet, host="db", password_var="PG_PASSWORD")
    # A plain password needs no variable, so the allow-list is not asked.
    assert (
        info(fleet, host="db", password="plain", password_var="PG_PASSWORD")["password"] == "plain"
    )


def test_an_unset_var_names_the_field() -> None:
    with pytest.raises(ConnectorError, match="user_var names 'NOT_SET', which is not set"):
        info(host="db", user_var="NOT_SET")
