"""What the base revision already knows of a working copy's files.

A recompile reuses the base revision's parse of every definition whose bytes did not
change (same path, same source hash). That knowledge comes from one of two places:

* the stat cache, when its entries describe the base revision itself (see
  :mod:`quarry.factory.statcache`): no database round trip and no row decoding, and
  the files each definition's references name are kept there as well, so the context
  files of unchanged definitions need no JSON, and so are the blob hashes;
* otherwise the database: the base revision's rows with their stored references.

A revision id is derived from its files' paths, roles and hashes, so both sources
say the same thing about a given revision; the cache is only faster.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from quarry.definitions.references import Ref, RefKind
from quarry.factory.scan import SourceFile
from quarry.factory.statcache import only_strings
from quarry.store import revisions as rq
from quarry.store.db import Engine

# (path, source hash) -> the base revision's row and its stored refs JSON.
Known = Mapping[tuple[str, str], tuple[rq.DefinitionRow, str]]

# The target of a FILE ref in stored refs JSON (canonical: keys sorted, no spaces).
_FILE_TARGET = re.compile(r'"kind":"file","line":\d+,"target":"((?:[^"\\]|\\.)*)"')

DEFINITION = "definition"


@dataclass
class Priors:
    """The base revision's definitions keyed by (path, source hash): each row with its
    stored refs JSON (from the database) or with the files its refs name (from the
    stat cache; the refs themselves are fetched only if a full check needs them)."""

    rows: dict[tuple[str, str], tuple[rq.DefinitionRow, str | list[str]]] = field(
        default_factory=dict
    )
    # the blob hashes of the base revision's files, when the stat cache knows them
    blobs: set[str] | None = None


def from_database(engine: Engine, workspace_id: str, revision_id: str | None) -> Known:
    if revision_id is None:
        return {}
    with engine.connect() as conn:
        pairs = rq.definitions_with_refs(conn, workspace_id, revision_id)
    return {(row.path, row.source_hash): (row, refs) for row, refs in pairs}


def from_cache(facts: Mapping[str, Any]) -> Priors:
    """The base revision's definitions and blob hashes from the stat cache's record of
    it (layout: :func:`facts`); a malformed record yields nothing."""
    try:
        paths, sources = facts["paths"], facts["sources"]
        contents, kinds, names = facts["contents"], facts["kinds"], facts["names"]
        targets, blobs = facts["targets"], facts["blobs"]
    except (KeyError, TypeError):
        return Priors()
    columns = (paths, sources, contents, kinds, names, blobs)
    if not all(only_strings(c) for c in columns) or not isinstance(targets, dict):
        return Priors()
    if not len(paths) == len(sources) == len(contents) == len(kinds) == len(names):
        return Priors()
    if not all(isinstance(p, str) and only_strings(t) for p, t in targets.items()):
        return Priors()
    empty: list[str] = []
    found = [targets.get(p, empty) for p in paths]
    rows = map(rq.DefinitionRow, kinds, names, paths, sources, contents)
    keys = zip(paths, sources, strict=True)
    return Priors(
        rows=dict(zip(keys, zip(rows, found, strict=True), strict=True)), blobs=set(blobs)
    )


def from_known(known: Known) -> Priors:
    return Priors(rows=dict(known))


def targets_of_json(refs_json: str) -> list[str]:
    """The FILE targets in stored refs JSON, without building ``Ref`` objects."""
    if '"file"' not in refs_json:
        return []
    found: list[str] = _FILE_TARGET.findall(refs_json)
    if any("\\" in t for t in found):  # an escaped character: decode properly
        found = [r["target"] for r in json.loads(refs_json) if r["kind"] == "file"]
    return found


def targets_of(refs: Sequence[Ref]) -> list[str]:
    return [r.target for r in refs if r.kind == RefKind.FILE]


def stored_refs(
    reused: Mapping[str, str | list[str]],
    sources: Mapping[str, str],
    known: Known | Callable[[], Known] | None,
) -> tuple[dict[str, list[Ref]], list[str]]:
    """The stored refs of every reused definition, for a full reference check.

    ``reused`` maps path -> refs JSON or (from the cache) the file targets; the JSON of
    the latter comes from ``known``. Returns the refs by path, and the paths ``known``
    did not have (to be parsed again)."""
    loaded: Known | None = None
    refs: dict[str, list[Ref]] = {}
    missing: list[str] = []
    for path, info in reused.items():
        if not isinstance(info, str):
            if loaded is None:
                loaded = (known() if callable(known) else known) or {}
            found = loaded.get((path, sources[path]))
            if found is None:
                missing.append(path)
                continue
            info = found[1]
        refs[path] = [Ref.from_json(r) for r in json.loads(info)]
    return refs, missing


def facts(
    revision_id: str,
    rows: Sequence[rq.DefinitionRow],
    targets: Mapping[str, list[str]],
    files: list[SourceFile],
) -> dict[str, Any]:
    """What a revision holds, in columns, as the stat cache keeps it."""
    return {
        "id": revision_id,
        "paths": [r.path for r in rows],
        "sources": [r.source_hash for r in rows],
        "contents": [r.content_hash for r in rows],
        "kinds": [r.kind for r in rows],
        "names": [r.name for r in rows],
        "targets": {p: t for p, t in targets.items() if t},
        "blobs": sorted({f.source_hash for f in files if f.role != DEFINITION}),
    }
