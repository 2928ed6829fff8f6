"""Where each task of a workflow or app is written: ``path:line`` by step key.

A run's steps are keyed by their position (``tasks.2.iter.3.tasks.0``, see
``quarry.runtime.engine.runner``). The compiler stores each task's own position —
the line where the task's mapping starts in its file, nested tasks of loops and
conditionals included (``quarry.definitions.task_positions``) — by the file's source
hash, so every task has a line, a formatter's too.

A revision compiled before those positions were stored falls back to what it does
have: the positions of the references a task makes (its database, SQL file,
topic...), the task's line being the first of them; a task without any is then
located by its file alone.

Iterations of a loop share the loop's tasks (``.iter.N`` is dropped) and a
sub-workflow's steps point at the ``workflow`` task that calls it. Used by the run
page, ``GET /api/v1/runs/{id}`` and the ``step.failed`` event (a failed step names
the file:line of its task).
"""

from __future__ import annotations

import json
import re
from typing import Any

from quarry.core.errors import NotFound
from quarry.definitions.task_positions import positions_from_json
from quarry.store import revisions as rq
from quarry.store.db import Engine
from quarry.store.workspaces import WorkspaceRow

_ITER = re.compile(r"\.iter\.\d+")
_KINDS = ("workflow", "app")
# A reference's field as the model names it -> the runner's step key.
_CONDITION = re.compile(r"\.conditions\.(\d+)\.tasks\.")
_ELSE = re.compile(r"\.else\.(\d+)")


def canonical_step(key: str) -> str:
    """The step key as written in the file: no iteration, nothing inside a sub-workflow."""
    key = _ITER.sub("", key)
    cut = key.find(".workflow.")
    return key if cut < 0 else key[:cut]


class TaskSources:
    """The file of a definition and the line of each of its tasks."""

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
    """Every task a reference's field lies in, as step keys:
    ``tasks.1.conditions.0.tasks.2.database`` is in ``tasks.1`` and in
    ``tasks.1.if.0.tasks.2``."""
    field = _ELSE.sub(r".else.tasks.\1", _CONDITION.sub(r".if.\1.tasks.", field))
    parts = field.split(".")
    keys = []
    for index in range(len(parts) - 1):
        if parts[index] == "tasks" and parts[index + 1].isdigit():
            keys.append(".".join(parts[: index + 2]))
    return keys


def _reference_lines(refs_json: str) -> dict[str, int]:
    """The older fallback: each task's first reference line."""
    lines: dict[str, int] = {}
    for ref in json.loads(refs_json or "[]"):
        line = ref.get("line")
        if not isinstance(line, int):
            continue
        for key in _task_keys(str(ref.get("field", ""))):
            lines[key] = min(line, lines.get(key, line))
    return lines


def task_sources(
    engine: Engine, catalog: Any, ws: WorkspaceRow, revision_id: str, kind: str, name: str
) -> TaskSources | None:
    """The task positions of a workflow's or app's definition at a revision; None for
    another kind, or when the revision no longer has it."""
    if kind not in _KINDS:
        return None
    try:  # the catalog resolves a workflow named by its file path
        doc = json.loads(catalog.definition(ws, revision_id, kind, name).body)
    except NotFound:
        return None
    with engine.connect() as conn:
        places = rq.definition_task_places(conn, ws.id, revision_id, kind, str(doc["name"]))
    if places is None:
        return None
    if places.positions is not None:
        lines = {key: at[0] for key, at in positions_from_json(places.positions).items()}
    else:
        lines = _reference_lines(places.refs)
    return TaskSources(places.path, lines)
