"""The semantic model of a revision, built once from its stored views and topics.

A revision never changes, so its :class:`~quarry.semantic.SemanticModel` (and the
catalog document served over HTTP) is cached by ``(workspace id, revision id)`` with
no invalidation: the serve fleet answers catalog and query requests from the
database alone, and builds the model once per revision per process. Concurrent
first requests for one revision build it once (a per-key lock), so a dashboard
opening on a fresh revision does not parse the same 100 views 100 times.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from quarry.catalog.cache import LruCache
from quarry.catalog.reader import Catalog, Document, make_document
from quarry.definitions.kinds import Kind
from quarry.definitions.parse import load_model
from quarry.semantic import SemanticModel
from quarry.store import revisions as rq
from quarry.store.workspaces import WorkspaceRow

# Motifs and saved queries are later kinds: read when the definitions know them.
_OPTIONAL_KINDS = ("motif", "query")
_KNOWN = frozenset(k.value for k in Kind)
MODEL_KINDS: tuple[str, ...] = (
    Kind.VIEW.value,
    Kind.TOPIC.value,
    *(k for k in _OPTIONAL_KINDS if k in _KNOWN),
)


class SemanticModels:
    """Per-revision semantic models and catalog documents over a :class:`Catalog`."""

    def __init__(self, catalog: Catalog, *, capacity: int = 64) -> None:
        self.catalog = catalog
        self._models: LruCache[tuple[str, str], SemanticModel] = LruCache(capacity)
        self._documents: LruCache[tuple[str, str], Document] = LruCache(capacity)
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()
        self.builds = 0  # models built (not served from cache): observable in tests

    def model(self, workspace: WorkspaceRow, revision_id: str) -> SemanticModel:
        """The revision's model; blocking (database reads and parsing): call on a thread."""
        key = (workspace.id, revision_id)
        hit = self._models.get(key)
        if hit is not None:
            return hit
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            hit = self._models.get(key)
            if hit is None:
                hit = self._build(workspace, revision_id)
                self._models.put(key, hit)
                self.builds += 1
        with self._guard:
            self._locks.pop(key, None)
        return hit

    def catalog_document(self, workspace: WorkspaceRow, revision_id: str) -> Document:
        """``model.catalog()`` as canonical JSON with a strong ETag, once per revision."""
        key = (workspace.id, revision_id)
        doc = self._documents.get(key)
        if doc is None:
            body = self.model(workspace, revision_id).catalog()
            doc = make_document({"revision_id": revision_id, **body})
            self._documents.put(key, doc)
        return doc

    def _build(self, workspace: WorkspaceRow, revision_id: str) -> SemanticModel:
        with self.catalog.engine.connect() as conn:
            rows = rq.definition_bodies_of_kinds(conn, workspace.id, revision_id, MODEL_KINDS)
        by_kind: dict[str, list[Any]] = {kind: [] for kind in MODEL_KINDS}
        for row, body in rows:
            by_kind[row.kind].append(load_model(Kind(row.kind), json.loads(body)))
        return SemanticModel.from_definitions(
            by_kind[Kind.VIEW.value],
            by_kind[Kind.TOPIC.value],
            motifs=by_kind.get("motif", []),
            saved_queries=by_kind.get("query", []),
        )
