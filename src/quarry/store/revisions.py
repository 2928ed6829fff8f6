"""Queries on compiled revisions: the rows the serve fleet reads."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Connection, Select, Table, and_, insert, select

from quarry.store.db import insert_ignoring_duplicates
from quarry.store.tables import (
    blobs,
    definition_bodies,
    definitions,
    revision_files,
    revisions,
    task_positions,
)


class DefinitionRow(NamedTuple):
    """A revision's membership row for one definition (a tuple in the table's column
    order after the key: a compile builds 10,000 of them and inserts them as they are)."""

    kind: str
    name: str
    path: str
    source_hash: str
    content_hash: str


class FileRow(NamedTuple):
    """A revision's row for one blob file (a tuple in the table's column order after
    the key, like ``DefinitionRow``)."""

    path: str
    role: str
    blob_hash: str
    size: int


@dataclass(frozen=True)
class RevisionRow:
    workspace_id: str
    revision_id: str
    git_commit: str | None
    git_branch: str | None
    git_dirty: bool
    definition_count: int
    file_count: int
    compiler_version: str
    created_at: datetime


@dataclass(frozen=True)
class NewRevision:
    row: RevisionRow
    definitions: Sequence[DefinitionRow]
    files: Sequence[FileRow]


def revision_exists(conn: Connection, workspace_id: str, revision_id: str) -> bool:
    found = conn.execute(
        select(revisions.c.revision_id).where(
            revisions.c.workspace_id == workspace_id, revisions.c.revision_id == revision_id
        )
    ).first()
    return found is not None


def get_revision(conn: Connection, workspace_id: str, revision_id: str) -> RevisionRow | None:
    r = conn.execute(
        select(revisions).where(
            revisions.c.workspace_id == workspace_id, revisions.c.revision_id == revision_id
        )
    ).first()
    if r is None:
        return None
    m = r._mapping
    return RevisionRow(**{**m, "git_dirty": bool(m["git_dirty"])})


def list_revisions(conn: Connection, workspace_id: str, limit: int = 50) -> list[RevisionRow]:
    rows = conn.execute(
        select(revisions)
        .where(revisions.c.workspace_id == workspace_id)
        .order_by(revisions.c.created_at.desc())
        .limit(limit)
    )
    return [RevisionRow(**{**r._mapping, "git_dirty": bool(r.git_dirty)}) for r in rows]


def _present(
    conn: Connection, column: ColumnElement[str], values: Iterable[str], *where: Any
) -> set[str]:
    """Which of ``values`` exist in ``column``, in chunks that keep every backend's
    bound-parameter limit."""
    wanted = sorted(set(values))
    found: set[str] = set()
    for i in range(0, len(wanted), 500):
        query = select(column).where(column.in_(wanted[i : i + 500]), *where)
        found.update(conn.execute(query).scalars())
    return found


def missing_bodies(conn: Connection, hashes: Iterable[str]) -> set[str]:
    wanted = set(hashes)
    return wanted - _present(conn, definition_bodies.c.content_hash, wanted)


def insert_bodies(conn: Connection, bodies: dict[str, tuple[str, str]]) -> None:
    """``bodies`` maps content hash to (canonical JSON body, refs JSON)."""
    insert_ignoring_duplicates(
        conn,
        definition_bodies,
        [{"content_hash": h, "body": b, "refs": r} for h, (b, r) in bodies.items()],
    )


def insert_task_positions(conn: Connection, positions: dict[str, str]) -> None:
    """``positions`` maps a file's source hash to its tasks' positions JSON; a hash
    already stored (the same bytes compiled before, anywhere) is left as it is."""
    insert_ignoring_duplicates(
        conn,
        task_positions,
        [{"source_hash": h, "positions": p} for h, p in positions.items()],
    )


class TaskPlaces(NamedTuple):
    """A definition's file, its tasks' own positions (None when the revision was
    compiled before they were stored) and its refs JSON (the older fallback)."""

    path: str
    positions: str | None
    refs: str


def definition_task_places(
    conn: Connection, workspace_id: str, revision_id: str, kind: str, name: str
) -> TaskPlaces | None:
    """Where a workflow's or app's tasks are written, in one query; None when the
    revision has no such definition."""
    query = (
        select(definitions.c.path, task_positions.c.positions, definition_bodies.c.refs)
        .join(definition_bodies, definition_bodies.c.content_hash == definitions.c.content_hash)
        .outerjoin(task_positions, task_positions.c.source_hash == definitions.c.source_hash)
        .where(
            _in_revision(definitions, workspace_id, revision_id),
            definitions.c.kind == kind,
            definitions.c.name == name,
        )
    )
    r = conn.execute(query).first()
    return None if r is None else TaskPlaces(r[0], r[1], r[2])


def insert_revision(conn: Connection, new: NewRevision) -> bool:
    """Store an immutable revision; False when an identical one was already stored."""
    row = new.row
    inserted = insert_ignoring_duplicates(
        conn,
        revisions,
        [
            dict(
                workspace_id=row.workspace_id,
                revision_id=row.revision_id,
                git_commit=row.git_commit,
                git_branch=row.git_branch,
                git_dirty=int(row.git_dirty),
                definition_count=row.definition_count,
                file_count=row.file_count,
                compiler_version=row.compiler_version,
                created_at=row.created_at,
            )
        ],
    )
    if not inserted:
        return False
    key = (row.workspace_id, row.revision_id)
    _bulk_insert(conn, definitions, key, new.definitions)
    _bulk_insert(conn, revision_files, key, new.files)
    return True


def _bulk_insert(
    conn: Connection, table: Table, key: tuple[str, str], rows: Sequence[object]
) -> None:
    """Insert a revision's rows (``key`` + the rows' attributes named like the table's
    other columns): with COPY on Postgres, in the same transaction; else one executemany
    of one statement."""
    if not rows:
        return
    names = [c.name for c in table.columns]
    if getattr(type(rows[0]), "_fields", None) == tuple(names[2:]):
        tuples: Sequence[tuple[Any, ...]] = rows  # type: ignore[assignment]  # column order
    else:
        values = attrgetter(*names[2:])
        tuples = [values(r) for r in rows]
    if conn.dialect.name == "postgresql":
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        columns = ", ".join(f'"{n}"' for n in names)
        with cursor.copy(f'COPY "{table.name}" ({columns}) FROM STDIN') as copy:
            for t in tuples:
                copy.write_row((*key, *t))
        return
    if conn.dialect.name != "sqlite":
        conn.execute(insert(table), [dict(zip(names, (*key, *t), strict=True)) for t in tuples])
        return
    # one prepared statement, executemany'd by sqlite3, without a parameter dict per row
    marks = ", ".join("?" * len(names))
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})"
    conn.exec_driver_sql(sql, [(*key, *t) for t in tuples])


def revision_blob_hashes(conn: Connection, workspace_id: str, revision_id: str) -> set[str]:
    """The blob hashes a stored revision's files point at (all uploaded already)."""
    query = select(revision_files.c.blob_hash).where(
        _in_revision(revision_files, workspace_id, revision_id)
    )
    return set(conn.execute(query).scalars().all())


_DEFINITION_COLUMNS = (
    definitions.c.kind,
    definitions.c.name,
    definitions.c.path,
    definitions.c.source_hash,
    definitions.c.content_hash,
)
_FILE_COLUMNS = (
    revision_files.c.path,
    revision_files.c.role,
    revision_files.c.blob_hash,
    revision_files.c.size,
)


def _in_revision(table: Table, workspace_id: str, revision_id: str) -> ColumnElement[bool]:
    return and_(table.c.workspace_id == workspace_id, table.c.revision_id == revision_id)


def _with_body(column: ColumnElement[str], workspace_id: str, revision_id: str) -> Select[Any]:
    return (
        select(*_DEFINITION_COLUMNS, column)
        .join(definition_bodies, definition_bodies.c.content_hash == definitions.c.content_hash)
        .where(_in_revision(definitions, workspace_id, revision_id))
    )


def definitions_with_refs(
    conn: Connection, workspace_id: str, revision_id: str
) -> list[tuple[DefinitionRow, str]]:
    """Every definition of a revision with its stored refs, for incremental recompiles."""
    rows = conn.execute(_with_body(definition_bodies.c.refs, workspace_id, revision_id)).all()
    return [(DefinitionRow(*r[:5]), r[5]) for r in rows]


def list_definitions(
    conn: Connection, workspace_id: str, revision_id: str, kind: str | None = None
) -> list[DefinitionRow]:
    query = select(*_DEFINITION_COLUMNS).where(_in_revision(definitions, workspace_id, revision_id))
    if kind is not None:
        query = query.where(definitions.c.kind == kind)
    rows = conn.execute(query.order_by(definitions.c.kind, definitions.c.name))
    return [DefinitionRow(*r) for r in rows]


def get_definition_body(
    conn: Connection, workspace_id: str, revision_id: str, kind: str, name: str
) -> tuple[DefinitionRow, str] | None:
    query = _with_body(definition_bodies.c.body, workspace_id, revision_id).where(
        definitions.c.kind == kind, definitions.c.name == name
    )
    r = conn.execute(query).first()
    return None if r is None else (DefinitionRow(*r[:5]), r[5])


def definition_bodies_of_kinds(
    conn: Connection, workspace_id: str, revision_id: str, kinds: Sequence[str]
) -> list[tuple[DefinitionRow, str]]:
    """Every definition of the given kinds with its body, in one query (the semantic
    model of a revision is built from all its views and topics at once)."""
    query = _with_body(definition_bodies.c.body, workspace_id, revision_id).where(
        definitions.c.kind.in_(list(kinds))
    )
    rows = conn.execute(query.order_by(definitions.c.kind, definitions.c.name)).all()
    return [(DefinitionRow(*r[:5]), r[5]) for r in rows]


def list_files(conn: Connection, workspace_id: str, revision_id: str) -> list[FileRow]:
    rows = conn.execute(
        select(*_FILE_COLUMNS)
        .where(_in_revision(revision_files, workspace_id, revision_id))
        .order_by(revision_files.c.path)
    )
    return [FileRow(*r) for r in rows]


def get_file(conn: Connection, workspace_id: str, revision_id: str, path: str) -> FileRow | None:
    r = conn.execute(
        select(*_FILE_COLUMNS).where(
            _in_revision(revision_files, workspace_id, revision_id),
            revision_files.c.path == path,
        )
    ).first()
    return None if r is None else FileRow(*r)


def known_blobs(conn: Connection, tenant_id: str, hashes: Iterable[str]) -> set[str]:
    return _present(conn, blobs.c.hash, hashes, blobs.c.tenant_id == tenant_id)


def record_blobs(conn: Connection, tenant_id: str, sizes: dict[str, int], when: datetime) -> None:
    insert_ignoring_duplicates(
        conn,
        blobs,
        [
            {"tenant_id": tenant_id, "hash": h, "size": s, "created_at": when}
            for h, s in sizes.items()
        ],
    )
