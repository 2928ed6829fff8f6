"""Semantic queries answered by a serving process: compile, run, cache.

The serve fleet has no working copy: the model comes from the revision's stored
views and topics (:class:`~quarry.catalog.semantic.SemanticModels`), the warehouse
is reached through the revision's ``config.yml`` with the runtime connectors (a
DuckDB dataset is materialised from the object store into the local blob cache),
and answers are shared between replicas through the object store
(:class:`~quarry.runtime.semantic.results.ResultCache`). Every method here blocks:
the HTTP layer calls them on a thread.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa

from quarry.catalog.cache import LruCache
from quarry.catalog.reader import Catalog
from quarry.catalog.semantic import SemanticModels
from quarry.runtime.apps.values import json_value
from quarry.runtime.connectors.base import BoundSql
from quarry.runtime.connectors.datasets import BlobCache
from quarry.runtime.connectors.registry import Connections
from quarry.runtime.semantic.results import (
    CachedResult,
    ResultCache,
    mark_truncated,
    result_key,
)
from quarry.runtime.semantic.target import QueryTarget, query_target
from quarry.runtime.source import RevisionSource
from quarry.semantic import (
    CompiledQuery,
    SemanticModel,
    SemanticQuery,
    compile_query,
    saved_step_query,
)
from quarry.store.objects import ObjectStore
from quarry.store.workspaces import WorkspaceRow


@dataclass(frozen=True)
class PreparedQuery:
    """A compiled query and everything its answer depends on."""

    compiled: CompiledQuery
    target: QueryTarget
    row_filters: list[list[Any]]  # [[member, [values...]], ...]: part of the cache key

    @property
    def bound(self) -> BoundSql:
        c = self.compiled
        return BoundSql(text=c.text, params=tuple(c.params), token=c.token)


def compile_for(
    models: SemanticModels | None,
    source: RevisionSource,
    query: SemanticQuery,
    principal: Mapping[str, Any],
    *,
    model: SemanticModel | None = None,
) -> PreparedQuery:
    """Compile ``query`` on ``source``'s revision with the principal's row filters."""
    if model is None:
        assert models is not None
        model = models.model(source.workspace, source.revision_id)
    target = query_target(model, query, source.config)
    filters = model.row_filters_for(query.topic, principal)
    compiled = compile_query(model, query, dialect=target.dialect, row_filters=filters)
    datasource = getattr(compiled, "datasource", None) or target.datasource
    if datasource != target.datasource:
        target = QueryTarget(datasource, target.dialect)
    key = [[f.member, list(f.values)] for f in filters]
    return PreparedQuery(compiled, target, key)


@dataclass
class _Opened:
    connections: Connections
    users: int = 0
    retired: bool = False


class _OpenConnections:
    """The warehouse connections of recent revisions. One pushed out of the LRU is
    closed once the last query using it has finished, never under a running one."""

    def __init__(self, capacity: int) -> None:
        self._capacity = max(1, capacity)
        self._open: OrderedDict[tuple[str, str], _Opened] = OrderedDict()
        self._lock = threading.Lock()

    @contextmanager
    def lease(self, key: tuple[str, str], make: Callable[[], Connections]) -> Iterator[Connections]:
        to_close: list[Connections] = []
        with self._lock:
            entry = self._open.get(key)
            if entry is None:
                entry = self._open[key] = _Opened(make())
            self._open.move_to_end(key)
            entry.users += 1
            while len(self._open) > self._capacity:
                _old_key, old = self._open.popitem(last=False)
                old.retired = True
                if old.users == 0:
                    to_close.append(old.connections)
        for connections in to_close:
            connections.close()
        try:
            yield entry.connections
        finally:
            with self._lock:
                entry.users -= 1
                last = entry.retired and entry.users == 0
            if last:
                entry.connections.close()

    def close(self) -> None:
        with self._lock:
            opened, self._open = list(self._open.values()), OrderedDict()
        for entry in opened:
            entry.connections.close()


class SemanticService:
    def __init__(
        self,
        catalog: Catalog,
        store: ObjectStore,
        *,
        cache_dir: Path,
        ttl: float,
        revisions_open: int = 8,
        threads: int = 32,
    ) -> None:
        self.catalog = catalog
        self.models = SemanticModels(catalog)
        self.results = ResultCache(store, ttl)
        self._blobs = BlobCache(cache_dir)
        self._connections = _OpenConnections(revisions_open)
        self._sources: dict[tuple[str, str], RevisionSource] = {}
        self._lock = threading.Lock()
        self._known: LruCache[tuple[Any, ...], tuple[str, date]] = LruCache(4096)
        self.executions = 0  # statements run on a warehouse by this process
        # Where the HTTP layer runs answers (a blocking warehouse call each); its own
        # pool, not the event loop's default one (admission bounds what reaches it).
        self.threads = ThreadPoolExecutor(threads, thread_name_prefix="semantic")

    def known_key(self, request: tuple[Any, ...]) -> str | None:
        """The result key an identical earlier request (same revision, body bytes and
        principal) resolved to today; lets a cached hit skip parsing and compiling."""
        found = self._known.get(request)
        if found is None or found[1] != date.today():
            return None
        return found[0]

    def remember_key(self, request: tuple[Any, ...], key: str) -> None:
        self._known.put(request, (key, date.today()))

    def source(self, workspace: WorkspaceRow, revision_id: str) -> RevisionSource:
        key = (workspace.id, revision_id)
        with self._lock:
            found = self._sources.get(key)
            if found is None:
                if len(self._sources) >= 256:
                    self._sources.clear()
                found = self._sources[key] = RevisionSource(self.catalog, workspace, revision_id)
        return found

    def prepare(
        self,
        workspace: WorkspaceRow,
        revision_id: str,
        query: SemanticQuery,
        principal: Mapping[str, Any],
    ) -> PreparedQuery:
        return compile_for(self.models, self.source(workspace, revision_id), query, principal)

    def saved_query(
        self,
        workspace: WorkspaceRow,
        revision_id: str,
        name: str,
        step: str | None,
        params: Mapping[str, Any] | None = None,
    ) -> SemanticQuery:
        """A saved query's step (``*.query.yml`` of the revision) with ``params``
        substituted; blocking: on a thread."""
        model = self.models.model(workspace, revision_id)
        return saved_step_query(model, name, step, params)

    def cache_key(
        self,
        workspace: WorkspaceRow,
        revision_id: str,
        query: SemanticQuery,
        prepared: PreparedQuery,
    ) -> str:
        # The bound values are part of the key: a relative date ("7 days ago") binds
        # a different day tomorrow, and the row filters bind the principal's values.
        depends = [prepared.row_filters, [json_value(p) for p in prepared.compiled.params]]
        return result_key(
            workspace.tenant_id, workspace.id, revision_id, query.cache_key(), depends
        )

    def execute(
        self, workspace: WorkspaceRow, revision_id: str, prepared: PreparedQuery
    ) -> pa.Table:
        source = self.source(workspace, revision_id)
        key = (workspace.id, revision_id)
        with self._connections.lease(key, lambda: Connections(source, self._blobs)) as opened:
            table = opened.get(prepared.target.datasource).query(prepared.bound)
        with self._lock:
            self.executions += 1
        return table

    def answer(
        self,
        workspace: WorkspaceRow,
        revision_id: str,
        query: SemanticQuery,
        principal: Mapping[str, Any],
        *,
        max_rows: int | None = None,
        publish: bool = True,
    ) -> tuple[CachedResult, bool, str]:
        """(rows, cache hit?, result key). Compiles first, so a bad query is a
        :class:`~quarry.semantic.SemanticError` and nothing runs. With ``max_rows``
        the warehouse is asked for one row more than that, and an answer that has it
        is cut to ``max_rows`` and marked truncated. ``publish`` false: the caller
        writes a computed answer to the shared store itself
        (:meth:`ResultCache.publish`)."""
        if max_rows is not None and (query.limit is None or query.limit > max_rows):
            query = query.model_copy(update={"limit": max_rows + 1})
        prepared = self.prepare(workspace, revision_id, query, principal)
        key = self.cache_key(workspace, revision_id, query, prepared)

        def compute() -> tuple[pa.Table, str]:
            table = self.execute(workspace, revision_id, prepared)
            if max_rows is not None and table.num_rows > max_rows:
                table = mark_truncated(table.slice(0, max_rows))
            return table, prepared.bound.display()

        result, hit = self.results.get_or_compute(key, compute, publish=publish)
        return result, hit, key

    def close(self) -> None:
        self.threads.shutdown(wait=True)
        self._connections.close()
        self.results.close()
