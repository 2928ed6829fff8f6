"""Shared fixtures: every backend-sensitive test runs on both SQLite + a local folder
and Postgres + S3 (a real local S3 server), parametrised rather than copied.

A test whose subject does not depend on the backend (an HTML page, the shape of an
HTTP answer, CLI output, the file or git API of a working copy) is marked
``backend_agnostic`` and runs on SQLite only: the ``postgres`` run of such a test
repeats what the store tests already prove on both backends, at three to five times
the cost (a cloned database, an S3 bucket). Anything about the store itself
(queries, locking, transactions, timestamps, the object store) stays on both.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from quarry.core.settings import Settings
from quarry.store.db import create_state_engine
from quarry.store.migrate import migrate
from tests.support.services import (
    S3Server,
    create_database,
    drop_database,
    pg_url,
    running_s3_server,
)

BACKEND_AGNOSTIC = "backend_agnostic"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{BACKEND_AGNOSTIC}: the test does not depend on the state backend; its "
        "``backend`` fixture runs on SQLite only (see tests/README.md)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``backend_agnostic`` tests get ``backend`` parametrised with SQLite alone; the
    fixture's own ``[sqlite, postgres]`` yields to an explicit parametrize mark."""
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        BACKEND_AGNOSTIC
    ):
        metafunc.definition.add_marker(
            pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
        )


@dataclass
class Backend:
    """Where state and objects live for one test, plus the env a child process needs."""

    name: str
    database_url: str
    blob_url: str
    env: dict[str, str] = field(default_factory=dict)

    def settings(self, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": self.database_url,
            "blob_url": self.blob_url,
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    def process_env(self) -> dict[str, str]:
        return {
            **self.env,
            "QUARRY_DATABASE_URL": self.database_url,
            "QUARRY_BLOB_URL": self.blob_url,
        }


@pytest.fixture(autouse=True)
def _open_auth_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Apps and processes a test starts run open (local mode) unless the test opts
    into tokens (``auth="tokens"`` or ``QUARRY_AUTH=tokens`` in a process's env)."""
    monkeypatch.setenv("QUARRY_AUTH", "open")


@pytest.fixture(autouse=True)
def _test_warehouses_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test warehouses live on the test cluster (loopback, the state database's own
    cluster) and name their secrets freely; tests/integration/runtime/connectors sets the
    production defaults explicitly."""
    monkeypatch.setenv("QUARRY_WAREHOUSE_ALLOW_LOOPBACK", "true")
    monkeypatch.setenv("QUARRY_WAREHOUSE_ALLOW_STATE_CLUSTER", "true")
    monkeypatch.setenv("QUARRY_SECRET_ENV_ALLOW", '{"*": ["*"]}')


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with running_s3_server() as server:
        yield server


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A database migrated once per test session; each test clones it (fast)."""
    name = create_database()
    engine = create_state_engine(pg_url(name))
    migrate(engine)
    engine.dispose()
    yield name
    drop_database(name)


@pytest.fixture
def pg_database(pg_template: str) -> Iterator[str]:
    name = create_database(template=pg_template)
    yield pg_url(name)
    drop_database(name)


@pytest.fixture
def empty_pg_database() -> Iterator[str]:
    name = create_database()
    yield pg_url(name)
    drop_database(name)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Backend:
    if request.param == "sqlite":
        state = tmp_path / "state"
        state.mkdir()
        return Backend(
            name="sqlite",
            database_url=f"sqlite:///{state / 'state.db'}",
            blob_url=(state / "blobs").as_uri(),
        )
    s3: S3Server = request.getfixturevalue("s3_server")
    database_url: str = request.getfixturevalue("pg_database")
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    bucket = s3.create_bucket()
    return Backend(
        name="postgres",
        database_url=database_url,
        blob_url=f"s3://{bucket}/quarry",
        env=dict(s3.env),
    )
