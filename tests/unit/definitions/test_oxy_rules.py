"""Oxy's own rules for values it accepts: connection defaults and precedence,
optional models, aliases, variable schemas."""

from __future__ import annotations

import pytest

from quarry.definitions.jsonschemas import value_problem
from quarry.definitions.models.config import (
    ClickHouseDatabase,
    MissingSecret,
    MysqlDatabase,
    PostgresDatabase,
    WorkspaceConfig,
)
from tests.unit.definitions.conftest import parse_text, problems_of, warnings_of

SECRETS = {"PG_HOST": "db.internal", "PG_PASSWORD": "s3cret"}


def _config(text: str) -> WorkspaceConfig:
    model = parse_text("config.yml", text).model
    assert isinstance(model, WorkspaceConfig)
    return model


def test_a_plain_value_beats_its_var_and_oxy_defaults_fill_the_rest() -> None:
    config = _config(
        """\
        databases:
          - name: pg
            type: postgres
            host: localhost
            host_var: PG_HOST
            password_var: PG_PASSWORD
          - name: my
            type: mysql
        """
    )
    pg, my = config.databases
    assert isinstance(pg, PostgresDatabase) and isinstance(my, MysqlDatabase)
    assert pg.setting("host", SECRETS.get) == "localhost"  # value over variable
    assert pg.setting("password", SECRETS.get) == "s3cret"
    assert [pg.setting(k, SECRETS.get) for k in ("port", "user", "database")] == [
        "5432",
        "postgres",
        "postgres",
    ]
    assert [my.setting(k, SECRETS.get) for k in ("host", "port", "user", "database")] == [
        "localhost",
        "3306",
        "root",
        "mysql",
    ]
    assert my.setting("password", SECRETS.get) is None


def test_an_unset_variable_is_named() -> None:
    config = _config("databases:\n  - {name: pg, type: postgres, user_var: PG_USER}\n")
    with pytest.raises(MissingSecret, match="user_var names 'PG_USER', which is not set"):
        config.databases[0].setting("user", SECRETS.get)  # type: ignore[union-attr]


def test_clickhouse_has_no_port_and_no_defaults() -> None:
    text = "databases:\n  - {name: ch, type: clickhouse, host: h, port: 9000}\n"
    assert warnings_of("config.yml", text) == [
        "config.yml:2:43: warning: unknown field 'port' is ignored (as Oxy ignores it)"
    ]
    ch = _config(text).databases[0]
    assert isinstance(ch, ClickHouseDatabase)
    assert ch.setting("user", SECRETS.get) is None


def test_models_are_needed_only_when_something_names_one() -> None:
    assert _config("databases: []\n").models == []
    assert problems_of("config.yml", "models: []\n") == [
        "config.yml:1:1: missing required field 'databases'"
    ]


def test_data_repos_is_the_older_spelling_of_repositories() -> None:
    parsed = parse_text("config.yml", "databases: []\ndata_repos:\n  - name: dbt\n    path: x\n")
    assert parsed.body["repositories"] == [{"name": "dbt", "path": "x"}]
    assert parsed.warnings == ()


def test_plain_password_is_accepted_as_oxy_accepts_it() -> None:
    parsed = parse_text("config.yml", "databases:\n  - {name: p, type: postgres, password: x}\n")
    assert parsed.warnings == ()


def test_run_time_values_are_checked_with_full_json_schema() -> None:
    schema = {"type": "string", "pattern": "^[A-Z]{2}$"}
    assert value_problem(schema, "EU") is None
    assert value_problem(schema, "Europe") == "'Europe' does not match '^[A-Z]{2}$'"
    nested = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}
    assert value_problem(nested, {"n": 0}) == "n: 0 is less than the minimum of 1"
