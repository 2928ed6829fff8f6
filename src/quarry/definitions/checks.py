"""Rules the schemas cannot express: names that must be unique within a file, and
display blocks that must draw a task of their app.

Duplicates are legal to pydantic but make the file ambiguous (which ``local``
database? which task's output does ``{{ load }}`` mean?), so they are errors. A
display block's ``data`` naming no task of the app is an error in Oxy too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from pydantic import BaseModel
from yaml.nodes import Node

from quarry.core.errors import Problem
from quarry.definitions.models.app import DATA_DISPLAYS, AppConfig, RowDisplay
from quarry.definitions.models.common import close_match
from quarry.definitions.models.config import WorkspaceConfig
from quarry.definitions.models.semantic import TopicConfig, ViewConfig
from quarry.definitions.models.tasks import ConditionalTask, LoopSequentialTask, Task
from quarry.definitions.models.workflow import WorkflowConfig
from quarry.definitions.semantic_rules import semantic_file_problems
from quarry.definitions.yaml_nodes import locate, position

Loc = tuple[str | int, ...]
# One namespace: what its names are called, and each name with where it is written.
Scope = tuple[str, list[tuple[str, Loc]]]


def unique_name_problems(path: str, root: Node, model: BaseModel) -> list[Problem]:
    scopes: list[Scope] = []
    if isinstance(model, WorkspaceConfig):
        scopes.append(("database", _named((db.name for db in model.databases), ("databases",))))
        scopes.append(("model", _named((m.name for m in model.models), ("models",))))
    elif isinstance(model, (WorkflowConfig, AppConfig)):
        scopes.extend(_task_scopes(model.tasks, ("tasks",)))
    elif isinstance(model, ViewConfig):
        scopes.append(("entity", _named((e.name for e in model.entities), ("entities",))))
        # Dimensions and measures are both queried as ``view.field``: one namespace.
        fields = _named((d.name for d in model.dimensions), ("dimensions",))
        fields += _named((m.name for m in model.measures or []), ("measures",))
        scopes.append(("field", fields))
    problems = [problem for scope in scopes for problem in _duplicates(path, root, scope)]
    if isinstance(model, AppConfig):
        problems += _display_data_problems(path, root, model)
    if isinstance(model, (ViewConfig, TopicConfig)):
        problems += semantic_file_problems(path, root, model)
    return problems


def _display_data_problems(path: str, root: Node, app: AppConfig) -> list[Problem]:
    """Oxy's rule: ``data`` names a task of the app (``task.sub`` checks ``task``,
    the part inside a sub-workflow can only be known at run time)."""
    tasks = sorted({task.name for task in app.tasks})

    def walk(blocks: Sequence[Any], base: Loc) -> Iterator[Problem]:
        for i, block in enumerate(blocks):
            if isinstance(block, RowDisplay):
                yield from walk(block.children, (*base, i, "children"))
            elif isinstance(block, DATA_DISPLAYS) and block.data.split(".", 1)[0] not in tasks:
                line, column = position(locate(root, (*base, i, "data")).node)
                hint = close_match(block.data.split(".", 1)[0], tasks)
                listed = ", ".join(tasks) or "none"
                message = (
                    f"display block draws task '{block.data}', which this app does not "
                    f"define (its tasks: {listed}){hint}"
                )
                yield Problem(path, line, column, message)

    return list(walk(app.display, ("display",)))


def _named(names: Iterable[str], base: Loc) -> list[tuple[str, Loc]]:
    return [(name, (*base, i, "name")) for i, name in enumerate(names)]


def _task_scopes(tasks: Sequence[Task], base: Loc) -> Iterator[Scope]:
    """Each task list is its own scope; nested lists are checked separately."""
    yield "task", _named((t.name for t in tasks), base)
    for i, task in enumerate(tasks):
        if isinstance(task, LoopSequentialTask):
            yield from _task_scopes(task.tasks, (*base, i, "tasks"))
        elif isinstance(task, ConditionalTask):
            for j, condition in enumerate(task.conditions):
                yield from _task_scopes(condition.tasks, (*base, i, "conditions", j, "tasks"))
            if task.else_ is not None:
                yield from _task_scopes(task.else_, (*base, i, "else"))


def _duplicates(path: str, root: Node, scope: Scope) -> Iterator[Problem]:
    noun, names = scope
    if len({name for name, _loc in names}) == len(names):
        return  # nothing repeated: no need to find where each name is written
    first_line: dict[str, int] = {}
    for name, loc in names:
        line, column = position(locate(root, loc).node)
        if name in first_line:
            message = f"duplicate {noun} name '{name}' (first used on line {first_line[name]})"
            yield Problem(path, line, column, message)
        else:
            first_line[name] = line
