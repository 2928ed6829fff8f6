"""Reading the demo workspace's definitions in tests: YAML and the SQL they ship."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class SqlUse:
    """One SQL statement the workspace ships, and the Jinja contexts it is run with."""

    where: str
    sql: str
    contexts: tuple[dict[str, Any], ...]


def _task_sql(root: Path, task: dict[str, Any]) -> str:
    if "sql_query" in task:
        return str(task["sql_query"])
    return (root / str(task["sql_file"])).read_text(encoding="utf-8")


def _workflow_sql(
    root: Path, where: str, tasks: list[dict[str, Any]], contexts: tuple[dict[str, Any], ...]
) -> Iterator[SqlUse]:
    for task in tasks:
        label = f"{where}:{task['name']}"
        kind = task["type"]
        if kind == "execute_sql":
            yield SqlUse(label, _task_sql(root, task), contexts)
        elif kind == "loop_sequential":
            inner = tuple(
                {**context, task["name"]: {"value": value}}
                for context in contexts
                for value in task["values"]
            )
            yield from _workflow_sql(root, label, task["tasks"], inner)
        elif kind == "conditional":
            for condition in task["conditions"]:
                yield from _workflow_sql(root, label, condition["tasks"], contexts)
            yield from _workflow_sql(root, label, task.get("else") or [], contexts)


def shipped_sql(root: Path) -> list[SqlUse]:
    """Every SQL statement in the workspace's workflows and apps, with sample contexts:
    each loop value for loop bodies, each option of every control for apps."""
    uses: list[SqlUse] = []
    for pattern in ("**/*.workflow.yml", "**/*.procedure.yml", "**/*.automation.yml"):
        for path in sorted(root.glob(pattern)):
            rel = path.relative_to(root).as_posix()
            uses.extend(_workflow_sql(root, rel, load_yaml(path)["tasks"], ({},)))
    for path in sorted(root.glob("**/*.app.yml")):
        rel = path.relative_to(root).as_posix()
        app = load_yaml(path)
        contexts: tuple[dict[str, Any], ...] = ({"controls": {}},)
        for control in app.get("controls", []):
            contexts = tuple(
                {"controls": {**context["controls"], control["name"]: option}}
                for context in contexts
                for option in control["options"]
            )
        uses.extend(_workflow_sql(root, rel, app["tasks"], contexts))
    return uses
