"""What a worker knows of a revision: its compiled definitions and its files.

A worker has no working copy. Definitions come from the catalog (bodies stored at
compile time, rebuilt into typed models with :func:`load_model`), SQL and data
files from the object store by content hash. Everything here is immutable per
revision, so answers are cached for the life of the object.
"""

from __future__ import annotations

import json
import posixpath
import threading
from functools import cached_property
from typing import Any

from pydantic import BaseModel

from quarry.catalog.reader import Catalog
from quarry.definitions.kinds import Kind
from quarry.definitions.models.config import WorkspaceConfig
from quarry.definitions.parse import load_model
from quarry.store import revisions as rq
from quarry.store.objects import ObjectStore
from quarry.store.revisions import FileRow
from quarry.store.workspaces import WorkspaceRow


class RevisionSource:
    def __init__(self, catalog: Catalog, workspace: WorkspaceRow, revision_id: str) -> None:
        self.catalog = catalog
        self.workspace = workspace
        self.revision_id = revision_id
        self._lock = threading.Lock()
        self._models: dict[tuple[str, str], BaseModel] = {}
        self._names: dict[tuple[str, str], str] = {}
        self._files: list[FileRow] | None = None
        self._bytes: dict[str, bytes] = {}

    @property
    def tenant_id(self) -> str:
        return self.workspace.tenant_id

    @property
    def store(self) -> ObjectStore:
        return self.catalog.store

    def definition(self, kind: Kind | str, name: str) -> BaseModel:
        """The typed model; ``quarry.core.errors.NotFound`` when there is none."""
        key = (str(kind), name)
        with self._lock:
            hit = self._models.get(key)
        if hit is not None:
            return hit
        doc = self.catalog.definition(self.workspace, self.revision_id, str(kind), name)
        envelope: dict[str, Any] = json.loads(doc.body)
        model = load_model(Kind(str(kind)), envelope["body"])
        with self._lock:
            self._models[key] = model
            self._names[key] = str(envelope["name"])
        return model

    def definition_name(self, kind: Kind | str, ref: str) -> str:
        """The name the definition ``ref`` finds is known by in this revision.

        ``ref`` is a name or, for a workflow, its file path: ``workflows/a.workflow.yml``
        is named ``workflows/a`` unless another workflow file shares the stem, in which
        case the path is its name. ``NotFound`` when there is no such definition.
        """
        self.definition(kind, ref)
        with self._lock:
            return self._names[(str(kind), ref)]

    @cached_property
    def config(self) -> WorkspaceConfig:
        model = self.definition(Kind.CONFIG, "config")
        assert isinstance(model, WorkspaceConfig)
        return model

    def file_bytes(self, path: str) -> bytes:
        """A file of the revision (e.g. a ``.sql`` file) by workspace-relative path."""
        clean = normalise_path(path)
        with self._lock:
            hit = self._bytes.get(clean)
        if hit is not None:
            return hit
        _row, data = self.catalog.file(self.workspace, self.revision_id, clean)
        # Only small files (SQL, documents) are read this way; data goes through the cache.
        if len(data) <= 1 << 20:
            with self._lock:
                self._bytes[clean] = data
        return data

    def files(self) -> list[FileRow]:
        with self._lock:
            if self._files is not None:
                return self._files
        with self.catalog.engine.connect() as conn:
            rows = rq.list_files(conn, self.workspace.id, self.revision_id)
        with self._lock:
            self._files = rows
        return rows

    def dataset_files(self, folder: str) -> list[FileRow]:
        """The revision's files under ``folder`` (workspace-relative), sorted by path."""
        prefix = normalise_path(folder).rstrip("/") + "/"
        return [row for row in self.files() if row.path.startswith(prefix)]


def normalise_path(path: str) -> str:
    """``./queries//a.sql`` -> ``queries/a.sql``; paths never leave the workspace."""
    cleaned = posixpath.normpath(path.strip().replace("\\", "/"))
    if cleaned.startswith("/") or cleaned == ".." or cleaned.startswith("../"):
        raise ValueError(f"path {path!r} points outside the workspace")
    return cleaned
