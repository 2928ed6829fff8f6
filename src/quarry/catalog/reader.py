"""The read model of compiled revisions.

Everything derived from a revision is cached in memory keyed by revision id with no
invalidation (a revision never changes). The one moving part is which revision is
*current*; a replica may keep its last answer for ``revision_cache_ttl`` seconds,
and the process that promotes drops its own entry at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from quarry.catalog.cache import LruCache
from quarry.core.errors import NotFound
from quarry.core.hashing import canonical_json, sha256_hex, short_id
from quarry.definitions.kinds import Kind, classify_path, definition_name
from quarry.store import revisions as rq
from quarry.store import workspaces as wq
from quarry.store.db import Engine
from quarry.store.objects import ObjectStore, blob_key
from quarry.store.workspaces import WorkspaceRow


@dataclass(frozen=True)
class Document:
    """Response bytes and their strong ETag, computed once per revision."""

    body: bytes
    etag: str


def make_document(value: object) -> Document:
    body = canonical_json(value)
    return Document(body=body, etag=f'"{short_id(sha256_hex(body))}"')


class Catalog:
    def __init__(
        self,
        engine: Engine,
        store: ObjectStore,
        *,
        current_ttl: float = 1.0,
        cache_size: int = 4096,
    ) -> None:
        self.engine = engine
        self.store = store
        self._ttl = current_ttl
        self._workspaces: dict[tuple[str, str], tuple[float, WorkspaceRow]] = {}
        self._lock = threading.Lock()
        self._docs: LruCache[tuple[str, ...], Document] = LruCache(cache_size)
        self._known_revisions: LruCache[tuple[str, str], bool] = LruCache(cache_size)

    # -- workspaces and revisions -------------------------------------------------
    def workspace(self, tenant_id: str, name: str, *, fresh: bool = False) -> WorkspaceRow:
        key = (tenant_id, name)
        now = time.monotonic()
        with self._lock:
            hit = self._workspaces.get(key)
        if hit is not None and not fresh and now - hit[0] < self._ttl:
            return hit[1]
        with self.engine.connect() as conn:
            row = wq.get_workspace(conn, tenant_id, name)
        with self._lock:
            self._workspaces[key] = (now, row)
        return row

    def peek_workspace(self, tenant_id: str, name: str) -> WorkspaceRow | None:
        """The cached row if still fresh: lets the hot path skip a thread hop."""
        with self._lock:
            hit = self._workspaces.get((tenant_id, name))
        if hit is not None and time.monotonic() - hit[0] < self._ttl:
            return hit[1]
        return None

    def peek_revision(self, workspace: WorkspaceRow, pinned: str | None) -> str | None:
        if pinned is None:
            return workspace.current_revision_id
        return pinned if self._known_revisions.get((workspace.id, pinned)) else None

    def peek_definition(
        self, workspace: WorkspaceRow, revision_id: str, kind: str, name: str
    ) -> Document | None:
        return self._docs.get(("def", workspace.id, revision_id, kind, name))

    def forget_workspace(self, tenant_id: str, name: str) -> None:
        with self._lock:
            self._workspaces.pop((tenant_id, name), None)

    def list_workspaces(
        self, tenant_id: str, *, limit: int | None = None, after: str | None = None
    ) -> list[WorkspaceRow]:
        """All of the tenant's workspaces, or a keyset page (``wq.list_workspaces``)."""
        with self.engine.connect() as conn:
            return wq.list_workspaces(conn, tenant_id, limit=limit, after=after)

    def resolve(self, workspace: WorkspaceRow, pinned: str | None) -> str:
        """The revision a request reads: the pinned one (which must exist) or current."""
        if pinned is None:
            if workspace.current_revision_id is None:
                raise NotFound(
                    f"workspace {workspace.name!r} has no promoted revision yet; compile it",
                    workspace=workspace.name,
                )
            return workspace.current_revision_id
        key = (workspace.id, pinned)
        if self._known_revisions.get(key) is None:
            with self.engine.connect() as conn:
                exists = rq.revision_exists(conn, workspace.id, pinned)
            if not exists:
                raise NotFound(
                    f"unknown revision {pinned!r} for workspace {workspace.name!r}",
                    revision=pinned,
                )
            self._known_revisions.put(key, True)
        return pinned

    def revision(self, workspace: WorkspaceRow, revision_id: str) -> Document:
        key = ("revision", workspace.id, revision_id)
        doc = self._docs.get(key)
        if doc is None:
            with self.engine.connect() as conn:
                row = rq.get_revision(conn, workspace.id, revision_id)
            if row is None:
                raise NotFound(f"unknown revision {revision_id!r}", revision=revision_id)
            doc = make_document(
                {
                    "workspace": workspace.name,
                    "revision_id": row.revision_id,
                    "git_commit": row.git_commit,
                    "git_branch": row.git_branch,
                    "git_dirty": row.git_dirty,
                    "definition_count": row.definition_count,
                    "file_count": row.file_count,
                    "compiler_version": row.compiler_version,
                    "created_at": row.created_at.isoformat(),
                }
            )
            self._docs.put(key, doc)
        return doc

    def list_revisions(self, workspace: WorkspaceRow, limit: int) -> list[rq.RevisionRow]:
        with self.engine.connect() as conn:
            return rq.list_revisions(conn, workspace.id, limit)

    # -- definitions and files ----------------------------------------------------
    def definitions(self, workspace: WorkspaceRow, revision_id: str, kind: str | None) -> Document:
        key = ("list", workspace.id, revision_id, kind or "")
        doc = self._docs.get(key)
        if doc is None:
            with self.engine.connect() as conn:
                rows = rq.list_definitions(conn, workspace.id, revision_id, kind)
            doc = make_document(
                {
                    "revision_id": revision_id,
                    "definitions": [
                        {
                            "kind": r.kind,
                            "name": r.name,
                            "path": r.path,
                            "content_hash": r.content_hash,
                        }
                        for r in rows
                    ],
                }
            )
            self._docs.put(key, doc)
        return doc

    def definition(
        self, workspace: WorkspaceRow, revision_id: str, kind: str, name: str
    ) -> Document:
        key = ("def", workspace.id, revision_id, kind, name)
        doc = self._docs.get(key)
        if doc is None:
            with self.engine.connect() as conn:
                found = rq.get_definition_body(conn, workspace.id, revision_id, kind, name)
                if found is None and kind == Kind.WORKFLOW.value:
                    # A workflow's file path finds it whichever name it has (its
                    # stem, unless another workflow file shares the stem).
                    stem = _workflow_stem(name)
                    if stem is not None:
                        found = rq.get_definition_body(conn, workspace.id, revision_id, kind, stem)
            if found is None:
                raise NotFound(
                    f"no {kind} named {name!r} in revision {revision_id}",
                    kind=kind,
                    name=name,
                    revision=revision_id,
                )
            row, body = found
            envelope = (
                f'{{"kind":{_json_str(row.kind)},"name":{_json_str(row.name)},'
                f'"path":{_json_str(row.path)},"content_hash":"{row.content_hash}",'
                f'"body":{body}}}'
            ).encode()
            doc = Document(body=envelope, etag=f'"{short_id(sha256_hex(envelope))}"')
            self._docs.put(key, doc)
        return doc

    def file(
        self, workspace: WorkspaceRow, revision_id: str, path: str
    ) -> tuple[rq.FileRow, bytes]:
        with self.engine.connect() as conn:
            row = rq.get_file(conn, workspace.id, revision_id, path)
        if row is None:
            raise NotFound(f"no file {path!r} in revision {revision_id}", path=path)
        return row, self.store.get(blob_key(workspace.tenant_id, row.blob_hash))


def _workflow_stem(name: str) -> str | None:
    if classify_path(name) is not Kind.WORKFLOW:
        return None
    return definition_name(name, Kind.WORKFLOW)


def _json_str(value: str) -> str:
    return canonical_json(value).decode()
