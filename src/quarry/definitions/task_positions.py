"""Where each task of a workflow or app is written, keyed as a run names its steps.

A failed step shows the ``file:line`` of its task (the run page, ``GET /runs/{id}``,
the ``step.failed`` event, ``quarry run``). The line is the task's own: where its
mapping starts in the YAML file (the line of its ``- name:``), not the line of
something inside it, so a task that names nothing (a formatter) has one too.

Positions are taken at parse time from the node tree the file was validated
against (no second parse) and keyed by the runner's step keys with the iteration
dropped: ``tasks.2`` and, inside it, ``tasks.2.tasks.0`` (a ``loop_sequential``),
``tasks.1.if.0.tasks.0`` and ``tasks.1.else.tasks.0`` (a ``conditional``); see
``quarry.runtime.engine.runner``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pydantic import BaseModel
from yaml.nodes import Node

from quarry.definitions.models.app import AppConfig
from quarry.definitions.models.tasks import ConditionalTask, LoopSequentialTask, Task
from quarry.definitions.models.workflow import WorkflowConfig
from quarry.definitions.yaml_nodes import locate, position

# step key -> (line, column), both 1-based
TaskPositions = dict[str, tuple[int, int]]


def task_positions(root: Node, model: BaseModel) -> TaskPositions:
    """The position of every task, nested ones included, of a workflow or app
    (empty for the other kinds)."""
    if not isinstance(model, (WorkflowConfig, AppConfig)):
        return {}
    found: TaskPositions = {}
    tasks_node = locate(root, ("tasks",))
    if tasks_node.path == ("tasks",):
        _walk(tasks_node.node, model.tasks, "tasks", found)
    return found


def positions_json(positions: TaskPositions) -> str:
    """What the compiler stores: ``{"tasks.0": [line, column], ...}``, keys sorted
    (equal files store equal text); ``""`` when there is nothing to store."""
    if not positions:
        return ""
    return json.dumps(
        {key: list(at) for key, at in positions.items()}, sort_keys=True, separators=(",", ":")
    )


def positions_from_json(text: str) -> TaskPositions:
    """The stored positions back; entries that are not ``[line, column]`` are left out."""
    data = json.loads(text) if text else {}
    found: TaskPositions = {}
    if isinstance(data, dict):
        for key, at in data.items():
            if isinstance(at, list) and len(at) == 2 and all(type(v) is int for v in at):
                found[str(key)] = (at[0], at[1])
    return found


def _walk(node: Node, tasks: Sequence[Task], key: str, found: TaskPositions) -> None:
    """``node`` is the sequence ``tasks`` were validated from; ``key`` its step prefix."""
    for index, task in enumerate(tasks):
        here = locate(node, (index,))
        if here.path != (index,):
            continue  # not where the model says (cannot happen for a validated file)
        task_key = f"{key}.{index}"
        found[task_key] = position(here.node)
        if isinstance(task, LoopSequentialTask):
            _nested(here.node, ("tasks",), task.tasks, f"{task_key}.tasks", found)
        elif isinstance(task, ConditionalTask):
            for j, condition in enumerate(task.conditions):
                loc = ("conditions", j, "tasks")
                _nested(here.node, loc, condition.tasks, f"{task_key}.if.{j}.tasks", found)
            if task.else_ is not None:
                _nested(here.node, ("else",), task.else_, f"{task_key}.else.tasks", found)


def _nested(
    parent: Node, loc: tuple[str | int, ...], tasks: Sequence[Task], key: str, found: TaskPositions
) -> None:
    located = locate(parent, loc)
    if located.path == loc:
        _walk(located.node, tasks, key, found)
