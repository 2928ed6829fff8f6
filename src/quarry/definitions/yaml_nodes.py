"""YAML reading that keeps where every value came from.

Pydantic only sees plain values, so we compose the node tree first (it carries line
and column marks), build the values from that same tree, and later walk it again
with a pydantic error ``loc`` to point the author at the exact key or value.

Scalars are resolved the way Oxy's YAML 1.2 reader does, not PyYAML's 1.1 default:
``no``/``on`` stay strings, ``2024-01-01`` stays a string, ``12:30`` is not 750, so
a workspace means the same thing here as it does in Oxy.

Hostile input is bounded before it can cost anything (:class:`YamlLimits`): nesting
deeper than ``max_depth`` is refused before the C composer, which recurses on the C
stack without a guard, sees the text; and aliases may add at most ``max_alias_nodes``
nodes to the document once expanded ("billion laughs" is a few hundred bytes that
expand to gigabytes in validation and in the stored body).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from quarry.core.errors import CompileFailed, Problem

if TYPE_CHECKING:
    _BaseLoader = yaml.SafeLoader
else:
    _BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_MERGE = "tag:yaml.org,2002:merge"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"

Loc = Sequence[str | int]


@dataclass(frozen=True)
class YamlLimits:
    """Bounds on one document (settings ``yaml_max_depth``, ``yaml_max_alias_nodes``).

    ``max_depth`` counts nested collections, aliases followed; ``max_alias_nodes``
    counts the nodes that alias resolution adds (an alias of a 20-node mapping used
    three times adds 60). Ordinary anchors (shared defaults merged with ``<<``) stay
    far below both.
    """

    max_depth: int = 100
    max_alias_nodes: int = 10_000


DEFAULT_LIMITS = YamlLimits()


class _Loader(_BaseLoader):
    """SafeLoader with YAML 1.2 core-schema scalar resolution."""

    yaml_implicit_resolvers: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}


for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (_INT, r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        _FLOAT,
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (_MERGE, r"^(?:<<)$", "<"),
):
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))

# Each scalar's tag, as PyYAML's ``Resolver.resolve`` finds it (the same resolvers,
# in the same order; no wildcard or path resolvers are ever added), without the two
# list concatenations and lookups it makes per scalar: the C parser calls this for
# every node of every file a compile reads.
_BY_FIRST: dict[str, tuple[tuple[str, re.Pattern[str]], ...]] = {
    first: tuple(resolvers) for first, resolvers in _Loader.yaml_implicit_resolvers.items()
}
_NOTHING: tuple[tuple[str, re.Pattern[str]], ...] = ()
assert None not in _BY_FIRST and not _Loader.yaml_path_resolvers


def _resolve(self: _Loader, kind: type[Node], value: str, implicit: tuple[bool, bool]) -> str:
    if kind is ScalarNode:
        if implicit[0]:
            for tag, regexp in _BY_FIRST.get(value[:1], _NOTHING):
                if regexp.match(value):
                    return tag
        return _STR
    return _SEQ if kind is SequenceNode else _MAP


_Loader.resolve = _resolve  # type: ignore[method-assign,assignment]


def _construct_int(loader: yaml.SafeLoader, node: ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    try:
        if text.startswith("0o"):
            return int(text[2:], 8)
        if text.startswith("0x"):
            return int(text[2:], 16)
        return int(text, 10)
    except ValueError:  # only reachable through an explicit ``!!int`` tag
        raise _bad_scalar(node, "an integer") from None


def _construct_float(loader: yaml.SafeLoader, node: ScalarNode) -> float:
    text = str(loader.construct_scalar(node))
    try:
        return float(text.lower().replace(".inf", "inf").replace(".nan", "nan"))
    except ValueError:  # only reachable through an explicit ``!!float`` tag
        raise _bad_scalar(node, "a number") from None


def _bad_scalar(node: Node, expected: str) -> yaml.MarkedYAMLError:
    return yaml.constructor.ConstructorError(
        None, None, f"'{node.value}' is not {expected}", node.start_mark
    )


_Loader.add_constructor(_INT, _construct_int)
_Loader.add_constructor(_FLOAT, _construct_float)


def position(node: Node) -> tuple[int, int]:
    """1-based line and column of where ``node`` starts."""
    return node.start_mark.line + 1, node.start_mark.column + 1


@dataclass(frozen=True)
class Document:
    """A parsed file: its node tree, the plain value built from it, and soft problems.

    ``problems`` are findings that do not stop validation (duplicate keys), so the
    author sees them together with the schema errors of the same file.
    """

    root: MappingNode
    value: dict[str, Any]
    problems: list[Problem]


def load_document(path: str, data: bytes, limits: YamlLimits = DEFAULT_LIMITS) -> Document:
    """Decode and parse one definition file; fatal problems raise CompileFailed."""
    text = _decode(path, data)
    if _may_be_too_deep(text, limits.max_depth):
        _check_depth(path, text, limits.max_depth)  # the exact (slower) check
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise CompileFailed(problems=[Problem(path, 1, 1, "the file is empty")])
        if not isinstance(node, MappingNode):
            line, column = position(node)
            raise CompileFailed(
                problems=[Problem(path, line, column, "the top level must be a mapping of keys")]
            )
        value: Any = None
        problems: list[Problem] = []
        if "&" in text:  # no anchor, no alias
            _check_aliases(path, node, limits)
        else:  # plain maps, lists and scalars: built and checked in one walk
            value = _plain_document(path, loader, node, problems)
        if value is None:
            problems = list(_check_nodes(path, node))
            value = loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise CompileFailed(problems=[_yaml_problem(path, text, exc)]) from None
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        # PyYAML's own constructors for explicit tags (``!!timestamp nonsense``)
        # fail with plain exceptions and no position.
        detail = f"a tagged value cannot be read ({exc})"
        raise CompileFailed(problems=[Problem(path, 1, 1, f"invalid YAML: {detail}")]) from None
    finally:
        loader.dispose()
    assert isinstance(value, dict)
    return Document(root=node, value=value, problems=problems)


_FLOW = re.compile(r"[\[\]{}]")


@functools.lru_cache(maxsize=8)
def _wide_prefix(columns: int) -> re.Pattern[str]:
    """A line whose indentation and block indicators ("- ", "? ", ": ", each of which
    can open one more block collection) span at least ``columns`` characters."""
    return re.compile(rf"^[ \t?:-]{{{columns},}}", re.MULTILINE)


def _may_be_too_deep(text: str, max_depth: int) -> bool:
    """Whether the document might nest deeper than ``max_depth``, in one cheap pass.

    A block collection nested in another starts at least one column further right,
    or at the same column for a sequence that is a mapping's value, so block depth is
    at most twice the widest line prefix plus two; flow collections add at most the
    running count of open brackets (brackets in quoted text only raise the bound).
    ``True`` is not a refusal: :func:`_check_depth` then counts exactly.
    """
    flow = text.count("[") + text.count("{")  # at most every opener nested
    if flow > max_depth // 2:
        flow = depth = 0
        for match in _FLOW.finditer(text):
            if match.group() in "[{":
                depth += 1
                flow = max(flow, depth)
            else:
                depth -= 1
    room = max_depth - flow - 2  # what block nesting may still use
    if room < 0:
        return True
    return _wide_prefix(room // 2 + 1).search(text) is not None


def _check_depth(path: str, text: str, max_depth: int) -> None:
    """Count nesting on the parser's events (libyaml's parser keeps its own stack on
    the heap; only composing recurses) and refuse the first collection too deep."""
    loader = _Loader(text)
    depth = 0
    try:
        while (event := loader.get_event()) is not None:  # type: ignore[no-untyped-call]
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > max_depth:
                    mark = event.start_mark
                    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
                    raise CompileFailed(
                        problems=[Problem(path, line, column, _too_deep(max_depth))]
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            elif isinstance(event, yaml.StreamEndEvent):
                return
    except yaml.YAMLError as exc:
        raise CompileFailed(problems=[_yaml_problem(path, text, exc)]) from None
    finally:
        loader.dispose()


def _too_deep(max_depth: int) -> str:
    return f"invalid YAML: nested more than {max_depth} levels deep (limit yaml_max_depth)"


def _check_aliases(path: str, root: Node, limits: YamlLimits) -> None:
    """Refuse a recursive alias, and aliases that would add more than
    ``max_alias_nodes`` nodes or nest deeper than ``max_depth`` once expanded.

    Composing shares an anchored node among its aliases, so the graph stays small;
    this walks it once (iteratively, memoised), adding an alias's expanded size each
    time a node already walked is met again. The problem points at the alias's key
    (or its sequence, for an item).
    """
    size: dict[int, int] = {}  # id -> nodes once expanded; present = done
    height: dict[int, int] = {}
    open_: set[int] = set()
    added = 0
    stack: list[tuple[Node, Node, bool]] = [(root, root, False)]
    while stack:
        node, where, children_done = stack.pop()
        ident = id(node)
        if children_done:
            kids = _children(node)
            size[ident] = 1 + sum(size[id(kid)] for kid, _ in kids)
            own = 0 if isinstance(node, ScalarNode) else 1
            height[ident] = own + max((height[id(kid)] for kid, _ in kids), default=0)
            open_.discard(ident)
            if height[ident] > limits.max_depth:
                line, column = position(where)
                raise CompileFailed(
                    problems=[Problem(path, line, column, _too_deep(limits.max_depth))]
                )
            continue
        if ident in open_:
            line, column = position(where)
            message = "invalid YAML: an alias refers to a collection that contains it"
            raise CompileFailed(problems=[Problem(path, line, column, message)])
        if ident in size:  # met again: an alias
            added += size[ident]
            if added > limits.max_alias_nodes:
                line, column = position(where)
                message = (
                    f"invalid YAML: aliases expand to more than {limits.max_alias_nodes} "
                    "nodes (limit yaml_max_alias_nodes)"
                )
                raise CompileFailed(problems=[Problem(path, line, column, message)])
            continue
        open_.add(ident)
        stack.append((node, where, True))
        stack.extend((kid, at, False) for kid, at in reversed(_children(node)))


def _children(node: Node) -> list[tuple[Node, Node]]:
    """The child nodes of ``node``, each with the node that marks where it is used."""
    if isinstance(node, MappingNode):
        out: list[tuple[Node, Node]] = []
        for key, value in node.value:
            out.append((key, key))
            out.append((value, key))
        return out
    if isinstance(node, SequenceNode):
        return [(item, node) for item in node.value]
    return []


def _decode(path: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise CompileFailed(
            problems=[Problem(path, line, column, "the file is not valid UTF-8 text")]
        ) from None


def _yaml_problem(path: str, text: str, exc: yaml.YAMLError) -> Problem:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        detail = exc.problem or "syntax error"
        if exc.context:
            detail = f"{detail} ({exc.context})"
        if mark is not None:
            return Problem(path, mark.line + 1, mark.column + 1, f"invalid YAML: {detail}")
        return Problem(path, 1, 1, f"invalid YAML: {detail}")
    if isinstance(exc, yaml.reader.ReaderError):
        before = text[: exc.position]
        line = before.count("\n") + 1
        column = exc.position - (before.rfind("\n") + 1) + 1
        return Problem(path, line, column, f"invalid YAML: {exc.reason}")
    return Problem(path, 1, 1, f"invalid YAML: {exc}")


def _check_nodes(path: str, root: Node) -> Iterator[Problem]:
    """Duplicate keys and non-finite numbers: legal YAML that cannot mean anything here.

    PyYAML silently keeps the last duplicate, which hides edits; NaN and infinity
    cannot be stored as JSON.
    """
    seen: set[int] = set()
    stack: list[Node] = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:  # aliases share nodes and may even form cycles
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            first: dict[tuple[str, str], Node] = {}
            for key, value in node.value:
                stack.append(value)
                if not isinstance(key, ScalarNode):
                    stack.append(key)
                    continue
                if key.tag == _MERGE:
                    continue
                marker = (key.tag, key.value)
                if marker in first:
                    earlier, _ = position(first[marker])
                    line, column = position(key)
                    yield Problem(
                        path,
                        line,
                        column,
                        f"duplicate key '{key.value}' (first defined on line {earlier})",
                    )
                else:
                    first[marker] = key
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, ScalarNode) and node.tag == _FLOAT:
            lowered = node.value.lower()
            if "inf" in lowered or "nan" in lowered:
                line, column = position(node)
                yield Problem(path, line, column, f"unsupported number '{node.value}' (not finite)")


_PLAIN_SCALARS = frozenset((_INT, _FLOAT, "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"))


class _NotPlain(Exception):
    """The document holds something the fast walk leaves to PyYAML's constructor."""


def _plain_document(
    path: str, loader: yaml.SafeLoader, root: MappingNode, problems: list[Problem]
) -> dict[str, Any] | None:
    """The value of a document without anchors, and :func:`_check_nodes`'s problems,
    in one walk; None (nothing appended) when it holds a merge key, a collection as
    a key or a tag other than map, seq, str, int, float, bool and null, which PyYAML's
    constructor then builds as before. Equal to ``construct_document`` otherwise
    (the last duplicate wins, keys keep their first position), at a fraction of its
    cost: most of a compile's files are plain, and this is per node of each."""
    constructors = loader.yaml_constructors
    found: list[Problem] = []

    def build(node: Node) -> Any:
        cls = node.__class__
        tag = node.tag
        if cls is ScalarNode:
            if tag == _STR:
                return node.value
            if tag not in _PLAIN_SCALARS:
                raise _NotPlain
            if tag == _FLOAT:
                lowered = node.value.lower()
                if "inf" in lowered or "nan" in lowered:
                    line, column = position(node)
                    message = f"unsupported number '{node.value}' (not finite)"
                    found.append(Problem(path, line, column, message))
            return constructors[tag](loader, node)
        if cls is MappingNode and tag == _MAP:
            out: dict[Any, Any] = {}
            first: dict[tuple[str, str], Node] = {}
            for key, item in node.value:
                if key.__class__ is not ScalarNode or key.tag == _MERGE:
                    raise _NotPlain
                marker = (key.tag, key.value)
                if marker in first:
                    earlier, _ = position(first[marker])
                    line, column = position(key)
                    message = f"duplicate key '{key.value}' (first defined on line {earlier})"
                    found.append(Problem(path, line, column, message))
                else:
                    first[marker] = key
                out[build(key)] = build(item)
            return out
        if cls is SequenceNode and tag == _SEQ:
            return [build(item) for item in node.value]
        raise _NotPlain

    try:
        value = build(root)
    except _NotPlain:
        return None
    problems.extend(found)
    return value  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Located:
    """Where a ``loc`` ends: the deepest node it reached, and its key if it is a value.

    A loc element that names no key (a pydantic union tag, or a missing field) leaves
    the walk on the mapping, which is the right place to report a missing field.
    ``path`` holds only the elements that were found, i.e. the author's own keys.
    """

    node: Node
    key: Node | None
    path: tuple[str | int, ...]


def locate(root: Node, loc: Loc) -> Located:
    node = root
    key: Node | None = None
    path: list[str | int] = []
    for part in loc:
        if isinstance(node, MappingNode) and isinstance(part, str):
            pair = find_key(node, part)
            if pair is not None:
                key, node = pair
                path.append(part)
        elif (
            isinstance(node, SequenceNode)
            and isinstance(part, int)
            and not isinstance(part, bool)
            and 0 <= part < len(node.value)
        ):
            key, node = None, node.value[part]
            path.append(part)
    return Located(node=node, key=key, path=tuple(path))


def find_key(mapping: MappingNode, name: str) -> tuple[Node, Node] | None:
    """The (key, value) nodes of ``name``; the last one wins, as when constructing."""
    keys, merges = _key_index(mapping)
    found = keys.get(name)
    if found is not None:
        return found
    if not merges:
        return None
    for key, value in mapping.value:
        if isinstance(key, ScalarNode) and key.tag == _MERGE:
            sources = value.value if isinstance(value, SequenceNode) else [value]
            for source in sources:
                if isinstance(source, MappingNode):
                    found = find_key(source, name)
                    if found is not None:
                        return found
    return None


_INDEX = "_quarry_key_index"


def _key_index(mapping: MappingNode) -> tuple[dict[str, tuple[Node, Node]], bool]:
    """The mapping's plain keys (the last of equal keys wins) and whether it has merge
    keys, made on first use and kept on the node: errors, warnings and every
    reference of a file are located through the same few mappings."""
    index: tuple[dict[str, tuple[Node, Node]], bool, int] | None
    index = getattr(mapping, _INDEX, None)
    if index is not None and index[2] == len(mapping.value):
        return index[0], index[1]
    keys: dict[str, tuple[Node, Node]] = {}
    merges = False
    for key, value in mapping.value:
        if isinstance(key, ScalarNode):
            if key.tag == _MERGE:
                merges = True
            else:
                keys[key.value] = (key, value)
    setattr(mapping, _INDEX, (keys, merges, len(mapping.value)))
    return keys, merges
