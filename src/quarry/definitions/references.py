"""What a definition points at, and whether those things exist.

Extraction happens once, at parse time, while the YAML positions are at hand; the
compiler stores the resulting :class:`Ref` values as JSON and checks them against
the whole workspace later, without parsing any file again.
"""

from __future__ import annotations

import difflib
import posixpath
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from quarry.core.errors import Problem
from quarry.definitions.kinds import Kind, classify_path


class RefKind(StrEnum):
    FILE = "file"
    DATABASE = "database"
    MODEL = "model"
    VIEW = "view"
    TOPIC = "topic"
    WORKFLOW = "workflow"
    AGENT = "agent"
    APP = "app"


@dataclass(frozen=True)
class Ref:
    """One reference, positioned at the value that makes it (1-based).

    FILE, WORKFLOW and AGENT targets are normalised workspace-relative paths;
    the others are names. ``field`` is the dotted path to the value, e.g.
    ``tasks.2.sql_file``.
    """

    kind: RefKind
    target: str
    line: int
    column: int
    field: str

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "target": self.target,
            "line": self.line,
            "column": self.column,
            "field": self.field,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Ref:
        return cls(
            kind=RefKind(data["kind"]),
            target=str(data["target"]),
            line=int(data["line"]),
            column=int(data["column"]),
            field=str(data["field"]),
        )


@dataclass
class ReferenceIndex:
    """Everything a workspace defines, as far as references can point at it."""

    paths: set[str]
    databases: set[str]
    models: set[str]
    views: set[str]
    topics: set[str]


_PATH_KINDS = {RefKind.WORKFLOW: Kind.WORKFLOW, RefKind.AGENT: Kind.AGENT, RefKind.APP: Kind.APP}
_PATH_EXPECTED = {
    RefKind.WORKFLOW: "a .workflow.yml, .procedure.yml or .automation.yml file",
    RefKind.AGENT: "an .agent.yml file",
    RefKind.APP: "an .app.yml file",
}
_LISTED = 20


def check_references(path: str, refs: Iterable[Ref], index: ReferenceIndex) -> list[Problem]:
    """Problems for the refs of the file at ``path`` that point at nothing."""
    problems = []
    for ref in refs:
        message = _check(ref, index)
        if message is not None:
            problems.append(Problem(path, ref.line, ref.column, message))
    return sorted(problems)


def _check(ref: Ref, index: ReferenceIndex) -> str | None:
    target = ref.target
    if ref.kind is RefKind.DATABASE:
        return _check_name("database", target, index.databases, "config.yml defines")
    if ref.kind is RefKind.MODEL:
        return _check_name("model", target, index.models, "config.yml defines")
    if ref.kind is RefKind.VIEW:
        return _check_name("view", target, index.views, "the workspace defines")
    if ref.kind is RefKind.TOPIC:
        return _check_name("topic", target, index.topics, "the workspace defines")
    if is_outside(target):
        return f"'{target}' is outside the workspace"
    noun = ref.kind.value
    wanted = _PATH_KINDS.get(ref.kind)
    if target not in index.paths:
        candidates = {p for p in index.paths if wanted is None or classify_path(p) is wanted}
        # Paths share long prefixes, so only near-identical ones are worth suggesting.
        hint = _close(target, candidates, cutoff=0.85)
        return f"{noun} '{target}' does not exist{hint}"
    if wanted is not None and classify_path(target) is not wanted:
        return f"'{target}' is not {_PATH_EXPECTED[ref.kind]}"
    return None


def _check_name(noun: str, target: str, known: set[str], source: str) -> str | None:
    if target in known:
        return None
    if not known:
        return f"unknown {noun} '{target}' ({source} no {noun}s)"
    names = sorted(known)
    listed = ", ".join(names[:_LISTED]) + (", ..." if len(names) > _LISTED else "")
    return f"unknown {noun} '{target}' ({source}: {listed}){_close(target, known)}"


def _close(target: str, known: set[str], cutoff: float = 0.6) -> str:
    matches = difflib.get_close_matches(target, sorted(known), n=1, cutoff=cutoff)
    return f"; did you mean '{matches[0]}'?" if matches else ""


def is_outside(relpath: str) -> bool:
    return relpath.startswith("/") or relpath == ".." or relpath.startswith("../")


def normalize_path(target: str, base_dir: str = "") -> str:
    """A workspace-relative posix path for ``target`` written relative to ``base_dir``."""
    joined = posixpath.join(base_dir, target) if base_dir else target
    return posixpath.normpath(joined)


_DYNAMIC = re.compile(r"[*?\[]|\{\{|\{%")


def is_dynamic(target: str) -> bool:
    """Glob patterns and Jinja templates cannot be checked before run time."""
    return _DYNAMIC.search(target) is not None


# Extraction yields (kind, target, loc) with loc as a pydantic-style path, so the
# parser can position each ref with the same node walk it uses for errors.
Found = tuple[RefKind, str, tuple[str | int, ...]]


def found(
    kind: RefKind, target: str, loc: tuple[str | int, ...], base_dir: str = ""
) -> Iterator[Found]:
    """One ref unless it is dynamic; path-like targets are normalised."""
    if not target or is_dynamic(target):
        return
    if kind in (RefKind.FILE, RefKind.WORKFLOW, RefKind.AGENT, RefKind.APP):
        target = normalize_path(target, base_dir)
    yield kind, target, loc
