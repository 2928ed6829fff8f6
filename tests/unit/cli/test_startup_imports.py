"""Start-up cost (issue #20): the ``quarry`` entry point imports only what a command
needs. Every module imported at the top of a CLI module, or of a module on the run
path, is paid by every invocation (``quarry run`` of ``SELECT 42`` took 2-3 s, most of
it imports); these tests fail when an eager import of a heavy library comes back.

Each runs a fresh interpreter (``sys.modules`` of this test process says nothing) and
reads the modules it had loaded when it exited.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Never needed to parse the command line, print help or load settings.
NOT_FOR_THE_ENTRY_POINT = (
    "alembic",
    "anthropic",
    "clickhouse_connect",
    "docx",
    "duckdb",
    "fastapi",
    "google.cloud.bigquery",
    "google.genai",
    "httpx",
    "jsonschema",
    "mcp",
    "minijinja",
    "numpy",
    "openai",
    "playwright",
    "prometheus_client",
    "psycopg",
    "pyarrow",
    "pydantic_settings",
    "pymysql",
    "snowflake",
    "sqlalchemy",
    "sqlglot",
    "starlette",
    "uvicorn",
)

# Never needed by ``quarry run`` of a workflow whose one step is SQL on DuckDB, with
# its state on SQLite (the local default): the web server, the LLM SDKs, the MCP SDK,
# the browser, other databases' drivers, the semantic compiler, JSON Schema (no
# variable schemas), the Word exporter, migrations (the schema is current).
NOT_FOR_A_SQL_RUN = (
    "alembic",
    "anthropic",
    "clickhouse_connect",
    "docx",
    "fastapi",
    "google.cloud.bigquery",
    "google.genai",
    "jsonschema",
    "lxml",
    "mcp",
    "openai",
    "playwright",
    "psycopg",
    "pymysql",
    "quarry.api",
    "quarry.semantic",
    "snowflake",
    "sqlalchemy.dialects.postgresql",
    "sqlglot",
    "starlette",
    "uvicorn",
)

# Never needed to build the web application (``quarry serve`` before it answers): the
# MCP SDK is imported in the background once it serves (quarry.api.fleet.mcp_mount).
NOT_FOR_THE_WEB_APP = (
    "alembic",
    "anthropic",
    "clickhouse_connect",
    "docx",
    "google.cloud.bigquery",
    "google.genai",
    "jsonschema",
    "lxml",
    "mcp",
    "openai",
    "playwright",
    "pymysql",
    "quarry.api.fleet.mcp",
    "snowflake",
)

_DUMP = textwrap.dedent(
    """
    import atexit, json, sys

    _path = sys.argv.pop(1)

    def _dump() -> None:
        with open(_path, "w") as out:
            json.dump(sorted(sys.modules), out)

    atexit.register(_dump)
    """
)


def _loaded(modules: list[str], forbidden: tuple[str, ...]) -> list[str]:
    """The forbidden packages among ``modules`` (a package counts with its submodules)."""
    return [
        name for name in forbidden if any(m == name or m.startswith(name + ".") for m in modules)
    ]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUARRY_")}
    env["QUARRY_DATA_DIR"] = str(tmp_path / "state")
    return env


def _modules_after(code: str, args: list[str], env: dict[str, str], cwd: Path) -> list[str]:
    """Run ``code`` (after the dump hook) in a fresh interpreter with ``args`` as its
    arguments; the modules loaded when it exited."""
    dump = cwd.parent / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", _DUMP + code, str(dump), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    modules = json.loads(dump.read_text())
    assert isinstance(modules, list)
    return modules


def test_the_entry_point_imports_no_heavy_library(tmp_path: Path) -> None:
    modules = _modules_after("import quarry.cli\n", [], _env(tmp_path), tmp_path)
    assert "quarry.cli" in modules and "typer" in modules  # it did import the CLI
    assert _loaded(modules, NOT_FOR_THE_ENTRY_POINT) == []


def _one_step_workspace(root: Path) -> Path:
    (root / "workflows").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "config.yml").write_text(
        "databases:\n  - name: local\n    type: duckdb\n    dataset: data/\n"
        "defaults:\n  database: local\n"
    )
    (root / "workflows" / "answer.workflow.yml").write_text(
        "tasks:\n  - name: answer\n    type: execute_sql\n    database: local\n"
        "    sql_query: SELECT 42 AS answer\n"
    )
    return root


@pytest.mark.slow
def test_a_sql_run_imports_no_server_sdk_or_other_driver(tmp_path: Path) -> None:
    root = _one_step_workspace(tmp_path / "ws")
    env = _env(tmp_path)
    run = "from quarry.cli import main\nsys.argv = ['quarry', *sys.argv[1:]]\nmain()\n"
    args = ["run", "workflows/answer.workflow.yml", "--json"]
    # The first run creates the state database (migrations: alembic); the second is
    # the one a person repeats while writing a workflow.
    _modules_after(f"import sys\n{run}", args, env, root)
    modules = _modules_after(f"import sys\n{run}", args, env, root)
    assert "duckdb" in modules and "quarry.runtime.engine.tasks.execute_sql" in modules
    assert _loaded(modules, NOT_FOR_A_SQL_RUN) == []


# Built on first use (``defer_build``), not at import: a SQL run needs the config and
# workflow models, not the agents', apps', semantic layer's or monitors'.
_BUILT_MODELS = """
from quarry.definitions.models.common import Lenient, Strict

def _all(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all(sub)

_models = set(_all(Strict)) | set(_all(Lenient))
_built = sorted(m.__module__ + "." + m.__qualname__ for m in _models
                if m.__dict__.get("__pydantic_complete__"))
print("BUILT", json.dumps(_built), len(_models))
"""


@pytest.mark.slow
def test_a_sql_run_builds_only_the_models_it_validates(tmp_path: Path) -> None:
    root = _one_step_workspace(tmp_path / "ws")
    env = _env(tmp_path)
    run = (
        "import sys\nfrom quarry.cli import main\n"
        "sys.argv = ['quarry', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
    )
    args = ["run", "workflows/answer.workflow.yml", "--quiet"]
    _modules_after(run, args, env, root)  # creates the state database
    done = subprocess.run(
        [sys.executable, "-c", _DUMP + run + _BUILT_MODELS, str(tmp_path / "m.json"), *args],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("BUILT "))
    built, total = line.removeprefix("BUILT ").rsplit(" ", 1)
    names = json.loads(built)
    assert int(total) > 100 and 0 < len(names) < 20, names
    assert not [n for n in names if n.startswith("quarry.definitions.models.agent.")]


def test_the_web_app_imports_no_sdk_or_other_driver(tmp_path: Path) -> None:
    modules = _modules_after("import quarry.api.app\n", [], _env(tmp_path), tmp_path)
    assert "quarry.api.app" in modules and "fastapi" in modules
    assert _loaded(modules, NOT_FOR_THE_WEB_APP) == []


def test_the_mcp_mount_puts_the_app_where_the_mcp_server_reads_it() -> None:
    from quarry.api.fleet import mcp, mcp_mount

    assert mcp_mount.APP_KEY == mcp.APP_KEY


def test_an_mcp_server_that_cannot_start_answers_503(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from quarry.api.fleet import mcp_mount

    monkeypatch.setattr(mcp_mount, "SERVER_MODULE", "quarry.api.fleet.no_such_module")
    app = FastAPI()
    app.include_router(mcp_mount.router)
    with TestClient(app) as client:
        answer = client.post("/mcp/", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert answer.status_code == 503
        assert answer.json() == {"detail": "the MCP server is unavailable"}
