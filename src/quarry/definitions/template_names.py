"""Names a workflow's or an app's templates use that nothing in the file defines.

Oxy's renderer is lenient: an undefined name prints as nothing and is false in an
``if``, so a misspelt task or variable only shows up as a wrong result at run time.
``quarry compile --check`` reports them as warnings, at the line of the template.

The names a template reads come from the template engine's own analysis
(minijinja's ``undeclared_variables``, nested: ``controls.region``, ``load.a``),
not from a pattern over the text, so names bound inside the template (``{% set %}``,
``for`` targets, macro arguments) and the engine's globals are not reported. What a
file defines, as the runner scopes it: a workflow's variables, the names of its
tasks (nested ``loop_sequential`` and ``conditional`` tasks included), ``step``;
an app's tasks and ``controls`` (the names of its controls, declared at the top or
inline in ``display``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from quarry.core.errors import WARNING, Problem
from quarry.definitions.kinds import Kind
from quarry.definitions.models.common import close_match

if TYPE_CHECKING:
    from minijinja import Environment

# Quarry's template globals (Oxy's, minijinja's built-ins, and ``param``).
GLOBALS = frozenset({"now", "range", "dict", "namespace", "debug", "param", "loop", "self"})
# Keys whose text is shown to people, never rendered, or rendered with names of
# their own (a consistency prompt sees submission_1, submission_2, task_description).
_NOT_TEMPLATES = frozenset({"description", "name", "type", "label", "consistency_prompt"})


@functools.cache
def _environment() -> Environment:
    from minijinja import Environment

    return Environment(undefined_behavior="lenient")


def used_names(source: str) -> set[str] | None:
    """The dotted names ``source`` reads (``load.a``), or None if it does not parse
    (the runtime reports a template's syntax errors)."""
    from minijinja import TemplateError

    env = _environment()
    try:
        found = env.undeclared_variables_in_str(source, nested=True)
    except TemplateError:
        return None
    return set(found)


def template_name_problems(path: str, kind: Kind, root: MappingNode, text: str) -> list[Problem]:
    """Warnings for the names the templates of the file at ``path`` use that it does
    not define; ``root`` is its YAML node tree, ``text`` its source (for columns)."""
    if kind not in (Kind.WORKFLOW, Kind.APP):
        return []
    tasks = set(_task_names(_value(root, "tasks")))
    defined = set(tasks) | {"step"}
    controls: set[str] | None = None
    if kind == Kind.WORKFLOW:
        defined.add("controls")  # an app running the workflow hands it its controls
        variables = _value(root, "variables")
        if isinstance(variables, MappingNode):
            defined |= {k.value for k, _ in variables.value if isinstance(k, ScalarNode)}
    else:
        controls = set(_control_names(root))
    lines = text.splitlines()
    problems: list[Problem] = []
    for node in _templates(root):
        names = used_names(node.value)
        if not names:
            continue
        for name in sorted(names):
            top, _, rest = name.partition(".")
            if top in GLOBALS or top in defined:
                continue
            if top == "controls" and controls is not None:
                control = rest.partition(".")[0]
                if controls and (not control or control in controls):
                    continue
                if controls:
                    hint = close_match(control, controls)
                    message = (
                        f"template uses 'controls.{control}', but this app has no control "
                        f"'{control}' (its controls: {', '.join(sorted(controls))}){hint}"
                    )
                else:
                    message = "template uses 'controls', but this app declares no controls"
                    name = "controls"
            else:
                hint = close_match(top, defined - {"step"})
                noun = "variable or task" if kind == Kind.WORKFLOW else "task or control"
                message = (
                    f"template uses '{top}', which nothing in this file defines "
                    f"(no {noun} of that name; it renders as nothing){hint}"
                )
            line, column = _where(node, name, lines)
            problems.append(Problem(path, line, column, message, WARNING))
    return sorted(set(problems))


def _value(mapping: MappingNode, key: str) -> Node | None:
    for k, v in mapping.value:
        if isinstance(k, ScalarNode) and k.value == key:
            assert isinstance(v, Node)
            return v
    return None


def _task_names(tasks: Node | None) -> Iterator[str]:
    if not isinstance(tasks, SequenceNode):
        return
    for task in tasks.value:
        if not isinstance(task, MappingNode):
            continue
        name = _value(task, "name")
        if isinstance(name, ScalarNode):
            yield name.value
        yield from _task_names(_value(task, "tasks"))
        yield from _task_names(_value(task, "else"))
        conditions = _value(task, "conditions")
        if isinstance(conditions, SequenceNode):
            for condition in conditions.value:
                if isinstance(condition, MappingNode):
                    yield from _task_names(_value(condition, "tasks"))


def _control_names(root: MappingNode) -> Iterator[str]:
    """Top-level ``controls:`` and inline ``type: control`` / ``type: controls``."""
    yield from _names_of(_value(root, "controls"))
    stack = [_value(root, "display")]
    while stack:
        blocks = stack.pop()
        if not isinstance(blocks, SequenceNode):
            continue
        for block in blocks.value:
            if not isinstance(block, MappingNode):
                continue
            kind = _value(block, "type")
            kind_name = kind.value if isinstance(kind, ScalarNode) else None
            if kind_name == "control":
                yield from _names_of(SequenceNode("", [block]))
            elif kind_name == "controls":
                yield from _names_of(_value(block, "items"))
            stack.append(_value(block, "children"))


def _names_of(items: Node | None) -> Iterator[str]:
    if isinstance(items, SequenceNode):
        for item in items.value:
            if isinstance(item, MappingNode):
                name = _value(item, "name")
                if isinstance(name, ScalarNode):
                    yield name.value


def _templates(root: Node) -> Iterator[ScalarNode]:
    """Every text value that holds template syntax, except display-only keys."""
    stack: list[Node] = [root]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            for key, value in node.value:
                if isinstance(key, ScalarNode) and key.value in _NOT_TEMPLATES:
                    continue
                stack.append(value)
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, ScalarNode) and ("{{" in node.value or "{%" in node.value):
            yield node


def _where(node: ScalarNode, name: str, lines: list[str]) -> tuple[int, int]:
    """The line (and column, when found on it) where ``name`` is written."""
    text = node.value
    word = re.compile(r"(?<![\w.])" + re.escape(name) + r"(?!\w)")
    found = word.search(text)
    if found is None:  # written another way (``controls['x']``): where its root is
        word = re.compile(r"(?<![\w.])" + re.escape(name.partition(".")[0]) + r"(?!\w)")
        found = word.search(text)
    line = node.start_mark.line + 1
    if found is not None:
        if node.style in ("|", ">"):
            line += 1 + text.count("\n", 0, found.start())
        elif node.style is None:
            line += text.count("\n", 0, found.start())
    if 0 < line <= len(lines):
        start = node.start_mark.column if line == node.start_mark.line + 1 else 0
        at = word.search(lines[line - 1], start)
        if at is not None:
            return line, at.start() + 1
    return line, node.start_mark.column + 1
