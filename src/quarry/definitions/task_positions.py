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
from yaml.nodes import MappingNode, Node, SequenceNode

from quarry.definitions.models.app import AppConfig
from quarry.definitions.models.tasks import ConditionalTask, LoopSequentialTask, Task
from quarry.definitions.models.workflow import WorkflowConfig
from quarry.definitions.yaml_nodes import find_key

# step key -> (line, column), both 1-based
TaskPositions = dict[str, tuple[int, int]]


def task_positions(root: Node, model: BaseModel) -> TaskPositions:
    """The position of every task, nested ones included, of a workflow or app
    (empty for the other kinds). Runs for every workflow and app a compile parses,
    so it indexes the node tree directly (a task is ``sequence.value[i]``) and looks
    keys up through the mapping's cached key index."""
    if not isinstance(model, (WorkflowConfig, AppConfig)) or not isinstance(root, MappingNode):
        return {}
    found: TaskPositions = {}
    _nested(root, "tasks", model.tasks, "tasks", found)
    return found


def positions_json(positions: TaskPositions) -> str:
    """What the compiler stores: ``{"tasks.0":[line,column],...}`` in the file's
    order (the same bytes store the same text); ``""`` when there is nothing to
    store. Step keys are dotted names and numbers only, so they need no escaping."""
    if not positions:
        return ""
    return "{" + ",".join(f'"{key}":[{at[0]},{at[1]}]' for key, at in positions.items()) + "}"


def positions_from_json(text: str) -> TaskPositions:
    """The stored positions back; entries that are not ``[line, column]`` are left out."""
    data = json.loads(text) if text else {}
    found: TaskPositions = {}
    if isinstance(data, dict):
        for key, at in data.items():
            if isinstance(at, list) and len(at) == 2 and all(type(v) is int for v in at):
                found[str(key)] = (at[0], at[1])
    return found


def _nested(parent: Node, name: str, tasks: Sequence[Task], key: str, found: TaskPositions) -> None:
    """The tasks under ``parent``'s key ``name`` (a list validated into ``tasks``)."""
    if not tasks or not isinstance(parent, MappingNode):
        return
    pair = find_key(parent, name)
    if pair is None or not isinstance(pair[1], SequenceNode):
        return  # not where the model says (cannot happen for a validated file)
    items = pair[1].value
    for index, task in enumerate(tasks[: len(items)]):
        node = items[index]
        mark = node.start_mark
        task_key = f"{key}.{index}"
        found[task_key] = (mark.line + 1, mark.column + 1)
        if isinstance(task, LoopSequentialTask):
            _nested(node, "tasks", task.tasks, f"{task_key}.tasks", found)
        elif isinstance(task, ConditionalTask):
            _conditions(node, task, task_key, found)


def _conditions(node: Node, task: ConditionalTask, key: str, found: TaskPositions) -> None:
    pair = find_key(node, "conditions") if isinstance(node, MappingNode) else None
    if pair is not None and isinstance(pair[1], SequenceNode):
        branches = pair[1].value
        for j, condition in enumerate(task.conditions[: len(branches)]):
            _nested(branches[j], "tasks", condition.tasks, f"{key}.if.{j}.tasks", found)
    if task.else_ is not None:
        _nested(node, "else", task.else_, f"{key}.else.tasks", found)
