"""Turn pydantic validation errors into positioned, author-facing problems.

Pydantic describes an error by a ``loc`` path through the Python value and a
message written for programmers. Authors need the line and column of the key or
value they typed and a sentence about their file, so each error is walked back
through the YAML node tree and reworded.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

from pydantic_core import ErrorDetails
from yaml.nodes import MappingNode, Node, ScalarNode

from quarry.core.errors import Problem
from quarry.definitions.models.common import UNSUPPORTED_TYPE, Strict, close_match
from quarry.definitions.yaml_nodes import find_key, locate, position

_INPUT_SHOULD_BE = "input should be "
_STR = "tag:yaml.org,2002:str"
_NOT_A_MAPPING = frozenset({"model_type", "model_attributes_type", "dict_type"})


def validation_problems(path: str, root: Node, errors: Iterable[ErrorDetails]) -> list[Problem]:
    """One problem per error, except that the failed members of one plain union
    (``str | list``) at one spot are merged into a single "should be a or b"."""
    grouped: dict[tuple[int, int, str], list[str]] = {}
    for error in errors:
        line, column, subject, message = _describe(root, error)
        grouped.setdefault((line, column, subject), []).append(message)
    problems: set[Problem] = set()
    for (line, column, subject), messages in grouped.items():
        unique = list(dict.fromkeys(messages))
        if len(unique) > 1 and all(m.startswith(_INPUT_SHOULD_BE) for m in unique):
            unique = [_INPUT_SHOULD_BE + " or ".join(m[len(_INPUT_SHOULD_BE) :] for m in unique)]
        for message in unique:
            text = f"{subject}: {message}" if subject else message
            problems.add(Problem(path, line, column, text))
    return sorted(problems)


def _describe(root: Node, error: ErrorDetails) -> tuple[int, int, str, str]:
    """(line, column, subject, message); the subject prefixes generic messages only."""
    loc = error["loc"]
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    where = locate(root, loc)
    node = where.node

    if kind == "extra_forbidden":
        line, column = position(where.key or node)
        parent = locate(root, loc[:-1]).node
        hint = close_match(str(loc[-1]), strict_keys(parent, str(loc[-1])))
        return line, column, "", f"unknown field '{loc[-1]}'{hint}"
    if kind == "invalid_key":
        # pydantic's loc for a non-text key is unreliable (True shows as 1); the
        # input is the key itself.
        mapping = locate(root, loc[:-1]).node
        key = _key_node(mapping, error["input"])
        line, column = position(key or mapping)
        shown = key.value if key is not None else str(error["input"])
        return line, column, "", f"key '{shown}' must be text (quote it)"
    if kind == "missing":
        line, column = position(node)
        return line, column, "", f"missing required field '{loc[-1]}'"
    if kind == UNSUPPORTED_TYPE:
        return _unsupported(node, error["input"], ctx)
    if kind == "union_tag_invalid":
        field = str(ctx.get("discriminator", "type")).strip("'")
        line, column = position(_value_of(node, field))
        tag = ctx.get("tag")
        expected = str(ctx.get("expected_tags", ""))
        hint = close_match(str(tag), _QUOTED.findall(expected))
        what = _what(loc, field)
        return line, column, "", f"unknown {what} '{tag}'{hint} (expected one of: {expected})"
    if kind in ("literal_error", "enum") and isinstance(error["input"], str):
        # a misspelt choice: say which value is unknown and what it was meant to be
        expected = str(ctx.get("expected", ""))
        hint = close_match(error["input"], _QUOTED.findall(expected))
        if hint and loc and isinstance(loc[-1], str):
            line, column = position(node)
            what = _what(loc[:-1], loc[-1])
            message = f"unknown {what} '{error['input']}'{hint} (expected {expected})"
            return line, column, "", message
    if kind == "union_tag_not_found":
        field = str(ctx.get("discriminator", "type")).strip("'")
        line, column = position(node)
        return line, column, "", f"missing required field '{field}'"

    line, column = position(node)
    subject = ".".join(str(part) for part in where.path)
    if kind in _NOT_A_MAPPING:
        return line, column, subject, "expected a mapping of keys"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return line, column, subject, message[:1].lower() + message[1:]


_QUOTED = re.compile(r"'([^']*)'")


def _what(loc: tuple[int | str, ...], field: str) -> str:
    """What a value names, for a message: ``database type`` for the ``type`` of an
    item of ``databases``, ``model vendor``, ``dimension type``; the field alone
    when it is not in an item of a list."""
    if len(loc) >= 2 and isinstance(loc[-1], int) and isinstance(loc[-2], str):
        part = loc[-2]
        noun = part[:-3] + "y" if part.endswith("ies") else part.removesuffix("s")
        return f"{noun} {field}".replace("_", " ")
    return field


def _unsupported(node: Node, value: Any, ctx: dict[str, Any]) -> tuple[int, int, str, str]:
    label = str(ctx.get("label", "type"))
    supported = str(ctx.get("supported", ""))
    line, column = position(node)
    if not isinstance(value, dict):
        noun = label.rsplit(" ", 1)[0]
        return line, column, "", f"expected a {noun}: a mapping with a 'type' key"
    if value.get("type") is None:
        return line, column, "", "missing required field 'type'"
    line, column = position(_value_of(node, "type"))
    tag = value["type"]
    if not isinstance(tag, str):
        return line, column, "", "'type' must be text"
    hint = close_match(tag, supported.split(", "))
    return line, column, "", f"unknown {label} '{tag}'{hint} (expected one of: {supported})"


def strict_keys(mapping: Node, unknown: str) -> list[str]:
    """The keys of the strict model a mapping was most likely meant to be.

    pydantic names the unknown key but not the model that refused it; the model is
    the strict one whose keys include the most of the mapping's other keys.
    """
    present = set()
    if isinstance(mapping, MappingNode):
        present = {k.value for k, _ in mapping.value if isinstance(k, ScalarNode)} - {unknown}
    best: list[str] = []
    best_score = -1
    for model in _strict_models():
        keys = [field.alias or name for name, field in model.model_fields.items()]
        score = len(present & set(keys))
        if score > best_score:
            best, best_score = keys, score
    return best


@functools.cache
def _strict_models() -> tuple[type[Strict], ...]:
    found: list[type[Strict]] = []
    stack: list[type[Strict]] = [Strict]
    while stack:
        model = stack.pop()
        found.extend(model.__subclasses__())
        stack.extend(model.__subclasses__())
    return tuple(sorted(set(found), key=lambda m: m.__qualname__))


def _key_node(node: Node, key: object) -> ScalarNode | None:
    """The node of a non-text key (``1:``, ``null:``, ``true:``) equal to ``key``."""
    if not isinstance(node, MappingNode):
        return None
    others = [k for k, _ in node.value if isinstance(k, ScalarNode) and k.tag != _STR]
    for candidate in others:
        if _scalar_value(candidate) == key and type(_scalar_value(candidate)) is type(key):
            return candidate
    return others[0] if others else None


def _scalar_value(node: ScalarNode) -> object:
    text = node.value
    if node.tag.endswith(":null"):
        return None
    if node.tag.endswith(":bool"):
        return text.lower() == "true"
    try:
        return int(text, 0) if node.tag.endswith(":int") else float(text)
    except ValueError:
        return text


def _value_of(node: Node, key: str) -> Node:
    if isinstance(node, MappingNode):
        found = find_key(node, key)
        if found is not None:
            return found[1]
    return node
