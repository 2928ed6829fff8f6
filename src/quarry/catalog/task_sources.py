"""Where each task of a workflow or app is written: ``path:line`` by step key.

A run's steps are keyed by their position (``tasks.2.iter.3.tasks.0``, see
``quarry.runtime.engine.runner``). The compiler stores the positions of every
reference a definition makes (``tasks.0.database`` at line 6, ``tasks.0.sql_file``
at line 7 — ``quarry.definitions.references``), so a task's line is the first line
of a reference inside it: the database, the SQL file, the topic, the agent... A task
without any reference (a formatter) is located by its file alone.

Iterations of a loop share the loop's tasks (``.iter.N`` is dropped) and a
sub-workflow's steps point at the ``workflow`` task that calls it. Used by the run
page (a step's error shows the file:line of its task).
"""

from __future__ import annotations

import json
import re
from typing import Any

from quarry.core.errors import NotFound
from quarry.store import revisions as rq
from quarry.store.db import Engine
from quarry.store.workspaces import WorkspaceRow

_ITER = re.compile(r"\.iter\.\d+")
_KINDS = ("workflow", "app")


def canonical_step(key: str) -> str:
    """The step key as written in the file: no iteration, nothing inside a sub-workflow."""
    key = _ITER.sub("", key)
    cut = key.find(".workflow.")
    return key if cut < 0 else key[:cut]


class TaskSources:
    """The file of a definition and the first line of each task that has a reference."""

    def __init__(self, path: str, lines: dict[str, int]) -> None:
        self.path = path
        self.lines = lines  # canonical task key -> line

    def of(self, step_key: str) -> str | None:
        """``path:line`` of the step's task, ``path`` when its line is unknown, None
        when the key is not a task of this definition (a run-level failure)."""
        key = canonical_step(step_key)
        if not key.startswith("tasks."):
            return None
        line = self.lines.get(key)
        return f"{self.path}:{line}" if line is not None else self.path

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "lines": self.lines}


def _task_keys(field: str) -> list[str]:
    """Every task a reference's field lies in: ``tasks.1.if.0.tasks.2.database`` is in
    ``tasks.1`` and in ``tasks.1.if.0.tasks.2``."""
    parts = field.split(".")
    keys = []
    for index in range(len(parts) - 1):
        if parts[index] == "tasks" and parts[index + 1].isdigit():
            keys.append(".".join(parts[: index + 2]))
    return keys


def task_sources(
    engine: Engine, catalog: Any, ws: WorkspaceRow, revision_id: str, kind: str, name: str
) -> TaskSources | None:
    """The task positions of a workflow's or app's definition at a revision; None for
    another kind, or when the revision no longer has it."""
    if kind not in _KINDS:
        return None
    try:
        doc = json.loads(catalog.definition(ws, revision_id, kind, name).body)
    except NotFound:
        return None
    path = str(doc["path"])
    with engine.connect() as conn:
        rows = rq.definitions_with_refs(conn, ws.id, revision_id)
    lines: dict[str, int] = {}
    for row, refs in rows:
        if row.path != path or row.kind != kind:
            continue
        for ref in json.loads(refs or "[]"):
            line = ref.get("line")
            if not isinstance(line, int):
                continue
            for key in _task_keys(str(ref.get("field", ""))):
                lines[key] = min(line, lines.get(key, line))
    return TaskSources(path, lines)
