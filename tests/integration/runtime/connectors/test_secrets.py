"""``*_var`` fields resolve only the names an operator allowed for the tenant, and a
resolved value never shows in a run's error (issue 13, item 2's secrets)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.runtime.connectors.clusters import private_cluster
from tests.integration.runtime.connectors.conftest import (
    FLEET_SECRET,
    Fleet,
    failure,
    running_fleet,
)
from tests.support.tenancy import s3_url


def _run_with(fleet: Fleet, database: str) -> dict[str, Any]:
    fleet.add_workflows(
        {
            "wh": "tasks:\n  - {name: q, type: execute_sql, database: wh,"
            " sql_query: 'SELECT 1 AS one'}\n"
        },
        config=fleet.config_with(database),
    )
    return fleet.run("wh")


@pytest.mark.parametrize(
    "variable",
    ["QUARRY_DATABASE_URL", "QUARRY_FLEET_SECRET_FOR_TESTS", "AWS_SECRET_ACCESS_KEY", "HOME"],
)
def test_a_variable_the_operator_did_not_allow_is_refused_by_name(
    fleet: Fleet, variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUARRY_DATABASE_URL", fleet.state_url)
    run = _run_with(
        fleet,
        "{name: wh, type: postgres, host: db.example.com, user: postgres,"
        f" password_var: {variable}}}",
    )
    assert run["state"] == "failed", run
    message = failure(run)
    assert "password_var" in message and variable in message
    assert "QUARRY_SECRET_ENV_ALLOW" in message
    text = json.dumps(run)
    assert fleet.state_url not in text and FLEET_SECRET not in text


@pytest.fixture
def allowing_fleet(
    fleet_env: None,
    request: pytest.FixtureRequest,
    pg_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Fleet]:
    """globex may name GLOBEX_*, acme ACME_*, every tenant SHARED_*; also QUARRY_* and
    AWS_* (which must resolve anyway: those never do); loopback warehouses allowed."""
    allow = {"globex": ["GLOBEX_*"], "acme": ["ACME_*"], "*": ["SHARED_*", "QUARRY_*", "AWS_*"]}
    with running_fleet(
        pg_database,
        s3_url(request, monkeypatch),
        tmp_path,
        secret_env_allow=allow,
        warehouse_allow_loopback=True,
    ) as fleet:
        yield fleet


def test_another_tenants_variable_is_refused(
    allowing_fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_PG_PASSWORD", "acme-password-91c2")
    run = _run_with(
        allowing_fleet,
        "{name: wh, type: postgres, host: db.example.com, user: postgres,"
        " password_var: ACME_PG_PASSWORD}",
    )
    assert run["state"] == "failed", run
    assert "ACME_PG_PASSWORD" in failure(run) and "acme-password-91c2" not in json.dumps(run)


@pytest.mark.parametrize("variable", ["QUARRY_FLEET_SECRET_FOR_TESTS", "AWS_SECRET_ACCESS_KEY"])
def test_quarry_and_object_store_variables_never_resolve(
    allowing_fleet: Fleet, variable: str
) -> None:
    run = _run_with(
        allowing_fleet,
        "{name: wh, type: postgres, host: db.example.com, user: postgres,"
        f" password_var: {variable}}}",
    )
    assert run["state"] == "failed", run
    assert variable in failure(run) and "never resolve" in failure(run)
    assert FLEET_SECRET not in json.dumps(run)


def test_a_connection_error_does_not_echo_resolved_values(
    allowing_fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's refusal quotes the user and database it was given: both came from
    secrets, so the run shows neither."""
    user, database = f"secret-user-{uuid.uuid4().hex[:8]}", f"secret-db-{uuid.uuid4().hex[:8]}"
    password = f"secret-password-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("GLOBEX_PG_USER", user)
    monkeypatch.setenv("GLOBEX_PG_DB", database)
    monkeypatch.setenv("GLOBEX_PG_PASSWORD", password)
    with private_cluster() as port:
        run = _run_with(
            allowing_fleet,
            f"{{name: wh, type: postgres, host: 127.0.0.1, port: '{port}',"
            " user_var: GLOBEX_PG_USER, database_var: GLOBEX_PG_DB,"
            " password_var: GLOBEX_PG_PASSWORD}",
        )
    assert run["state"] == "failed", run
    assert "cannot connect to database 'wh'" in failure(run)
    text = json.dumps(run)
    for secret in (user, database, password):
        assert secret not in text


def test_an_allowed_variable_resolves(
    allowing_fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHARED_PG_USER", "postgres")
    with private_cluster() as port:
        run = _run_with(
            allowing_fleet,
            f"{{name: wh, type: postgres, host: 127.0.0.1, port: '{port}',"
            " user_var: SHARED_PG_USER, database: postgres}",
        )
    assert run["state"] == "succeeded", run
