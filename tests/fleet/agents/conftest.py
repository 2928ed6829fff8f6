"""The warehouse the fleet agent tests ask about: a Postgres database of the test's
own with a ``notes`` table (two rows for north, one for south), so each test can
count the queries it received; the workspace whose agent asks it, and a worker
process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import yaml

from tests.support.model_server import ModelServer
from tests.support.services import PG_ADMIN_DSN


@pytest.fixture
def notes_warehouse(empty_pg_database: str) -> str:
    """The database name of a fresh warehouse holding ``notes(region)``."""
    warehouse = empty_pg_database.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{warehouse}", autocommit=True) as c:
        c.execute("CREATE TABLE notes (region text)")
        c.execute("INSERT INTO notes VALUES ('north'), ('north'), ('south')")
    return warehouse


def notes_workspace(root: Path, warehouse: str, server: ModelServer) -> Path:
    """A workspace at ``root`` whose agent ``agents/notes`` (model ``gpt``, served by
    ``server``, key from ``TEST_OPENAI_KEY``) answers with ``execute_sql`` on the
    Postgres database ``warehouse`` (``pg``)."""
    (root / "agents").mkdir(parents=True)
    database = {
        "name": "pg",
        "type": "postgres",
        "host": "127.0.0.1",
        "port": "5432",
        "user": "postgres",
        "database": warehouse,
    }
    (root / "config.yml").write_text(yaml.safe_dump({"databases": [database]}))
    server.serve_models(root, "TEST_OPENAI_KEY")
    agent = {
        "model": "gpt",
        "system_instructions": "Answer with SQL.",
        "tools": [{"type": "execute_sql", "database": "pg"}],
    }
    (root / "agents" / "notes.agent.yml").write_text(yaml.safe_dump(agent))
    return root


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``quarry worker`` in a process of its own, ``env`` added, output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "quarry", "worker"],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
