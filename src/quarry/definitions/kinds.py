"""Which workspace files are definitions, and what each one is called.

The kind comes from the file name alone (as in Oxy), so the compiler can route a
file before reading it and a rename is the only way to change what a file is.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Kind(StrEnum):
    CONFIG = "config"
    WORKFLOW = "workflow"
    APP = "app"
    AGENT = "agent"
    AGENTIC = "agentic"
    VIEW = "view"
    TOPIC = "topic"
    SCHEDULE = "schedule"
    MONITOR = "monitor"
    MOTIF = "motif"  # a semantic-layer motif (airlayer ``*.motif.yml``)
    QUERY = "query"  # a saved semantic query (airlayer ``*.query.yml``)


_EXTENSIONS = (".yml", ".yaml")

# Longest first is not needed (no suffix is a suffix of another), but the order is
# the one a reader expects.
_SUFFIX_KINDS: tuple[tuple[str, Kind], ...] = tuple(
    (f".{stem}{ext}", kind)
    for stem, kind in (
        ("workflow", Kind.WORKFLOW),
        ("procedure", Kind.WORKFLOW),
        ("automation", Kind.WORKFLOW),
        ("app", Kind.APP),
        ("agent", Kind.AGENT),
        ("agentic", Kind.AGENTIC),
        ("view", Kind.VIEW),
        ("topic", Kind.TOPIC),
        ("schedule", Kind.SCHEDULE),
        ("monitor", Kind.MONITOR),
        ("motif", Kind.MOTIF),
        ("query", Kind.QUERY),
    )
    for ext in _EXTENSIONS
)

_CONFIG_NAMES = frozenset(f"config{ext}" for ext in _EXTENSIONS)


# Every suffix is ".<kind>.<extension>": looked up by the last two dotted parts.
_BY_SUFFIX = {suffix: kind for suffix, kind in reversed(_SUFFIX_KINDS)}
assert all(suffix.count(".") == 2 for suffix in _BY_SUFFIX)


def _suffix_of(relpath: str) -> tuple[str, Kind] | None:
    parts = relpath.rsplit("/", 1)[-1].rsplit(".", 2)
    # A bare ".view.yml" has no name to be known by, so it is not a definition.
    if len(parts) != 3 or not parts[0]:
        return None
    suffix = f".{parts[1]}.{parts[2]}"
    kind = _BY_SUFFIX.get(suffix)
    return None if kind is None else (suffix, kind)


def classify_path(relpath: str) -> Kind | None:
    """The kind of a workspace file (posix path relative to the root), or None.

    Only the root ``config.yml`` configures the workspace; a ``config.yml`` deeper
    down is someone's data file and is left alone.
    """
    if relpath in _CONFIG_NAMES:
        return Kind.CONFIG
    found = _suffix_of(relpath)
    return found[1] if found else None


def definition_name(relpath: str, kind: Kind) -> str:
    """The path without its kind suffix: ``workflows/sales.procedure.yml`` -> ``workflows/sales``.

    Keeping the folders makes names unique across the workspace without asking
    authors to invent unique file names.
    """
    if kind is Kind.CONFIG:
        if relpath not in _CONFIG_NAMES:
            raise ValueError(f"{relpath!r} is not the workspace config.yml")
        return "config"
    found = _suffix_of(relpath)
    if found is None or found[1] is not kind:
        raise ValueError(f"{relpath!r} is not a {kind} file")
    return relpath[: -len(found[0])]


# Oxy file kinds Quarry does not read yet, by how their path ends (or begins).
# (Oxy's test files, ``*.test.yml``, are read by ``quarry test``: quarry.agents.test_files.)
_UNREAD_SUFFIXES = (
    (".aw.yml", "an Oxy agentic workflow (.aw.yml)"),
    (".aw.yaml", "an Oxy agentic workflow (.aw.yml)"),
)
# Folders whose files Oxy reads as one thing: reported once per folder.
_UNREAD_FOLDERS = (
    (".databases/", "Oxy's database schema files (.databases/, written by `oxy sync`)"),
    ("modeling/", "an airform/dbt modeling project (modeling/)"),
)


def unread_kind(relpath: str) -> tuple[str, str] | None:
    """(where, what) for a file of an Oxy kind Quarry does not read yet, else None.

    ``where`` is the file itself, or the folder when the whole folder is one thing
    (so a folder of 500 schema files is one warning, not 500). Such files are
    listed with a warning rather than skipped silently.
    """
    for folder, what in _UNREAD_FOLDERS:
        if relpath.startswith(folder) and relpath.endswith(_EXTENSIONS):
            return folder, what
    basename = relpath.rsplit("/", 1)[-1]
    for suffix, what in _UNREAD_SUFFIXES:
        if basename.endswith(suffix) and len(basename) > len(suffix):
            return relpath, what
    return None


def workflow_names(paths: Iterable[str]) -> dict[str, str]:
    """The name of each workflow file among ``paths``.

    Oxy addresses a workflow by its path, so ``a.workflow.yml`` and
    ``a.procedure.yml`` are two workflows. Quarry's name for a workflow is its path
    without the suffix (``workflows/a``) as long as no other workflow file shares
    that stem; files that do are named by their full path (``workflows/a.procedure.yml``)
    so both compile and each stays addressable.
    """
    stems: dict[str, list[str]] = {}
    for path in paths:
        if classify_path(path) is Kind.WORKFLOW:
            stems.setdefault(definition_name(path, Kind.WORKFLOW), []).append(path)
    names: dict[str, str] = {}
    for stem, files in stems.items():
        for path in files:
            names[path] = stem if len(files) == 1 else path
    return names
