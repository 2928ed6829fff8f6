"""A small workspace with schedules and monitors, written and compiled for real."""

from __future__ import annotations

import textwrap
from pathlib import Path

from quarry.factory.compiler import CompileResult
from quarry.factory.local import compile_local
from quarry.node.services import Services

CONFIG = """\
databases:
  - name: local
    type: duckdb
    dataset: data
models: []
"""

WORKFLOW = """\
tasks:
  - name: one
    type: execute_sql
    database: local
    sql_query: select 1 as x
"""


def schedule_yaml(
    cron: str = "* * * * * *",
    *,
    workflow: str = "workflows/nightly.workflow.yml",
    timezone: str = "UTC",
    overlap: str = "queue",
    enabled: bool = True,
    extra: str = "",
) -> str:
    return (
        f"target:\n  workflow: {workflow}\ncron: '{cron}'\ntimezone: {timezone}\n"
        f"overlap: {overlap}\nenabled: {str(enabled).lower()}\n{extra}"
    )


def monitor_yaml(
    sql: str,
    *,
    operator: str = ">",
    value: float = 10,
    cron: str = "* * * * * *",
    hook_env: str = "TEST_ALERT_HOOK",
    fmt: str = "json",
) -> str:
    return textwrap.dedent(
        f"""\
        query:
          database: local
          sql: "{sql}"
        condition:
          type: threshold
          operator: "{operator}"
          value: {value}
        cron: '{cron}'
        notify:
          - url_env: {hook_env}
            format: {fmt}
        """
    )


class Workspace:
    def __init__(self, root: Path, svc: Services, name: str = "sched") -> None:
        self.root = root
        self.svc = svc
        self.name = name
        (root / "data").mkdir(parents=True, exist_ok=True)
        (root / "data" / "level.csv").write_text("level\n1\n")
        self.write("config.yml", CONFIG)
        self.write("workflows/nightly.workflow.yml", WORKFLOW)

    def write(self, path: str, text: str) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def remove(self, path: str) -> None:
        (self.root / path).unlink()

    def compile(self) -> CompileResult:
        return compile_local(
            self.svc.engine,
            self.svc.store,
            "local",
            self.root,
            self.name,
            data_dir=self.root.parent / f"{self.name}-data",
        )

    @property
    def workspace_id(self) -> str:
        from quarry.store.workspaces import get_workspace

        with self.svc.engine.connect() as conn:
            return get_workspace(conn, "local", self.name).id
