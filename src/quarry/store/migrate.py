"""Versioned migrations, run by ``quarry migrate`` or at boot.

Co-booting nodes on Postgres serialise on an advisory lock; the first applies the
pending migrations and the rest find the schema current and do nothing. A node that
meets a schema it does not know (newer than its release) refuses to start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from quarry.core.errors import SchemaMismatch

log = logging.getLogger(__name__)

# Any fixed 64-bit number; "quarry" in ASCII so it is recognisable in pg_locks.
ADVISORY_LOCK_KEY = 0x717561727279


@dataclass(frozen=True)
class MigrationOutcome:
    applied: list[str]
    head: str

    @property
    def changed(self) -> bool:
        return bool(self.applied)


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "quarry.store:migrations")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def code_head() -> str:
    heads = _scripts().get_heads()
    if len(heads) != 1:
        raise SchemaMismatch(f"migration history has {len(heads)} heads; expected one")
    return heads[0]


def _database_revision(connection: Connection) -> str | None:
    heads = MigrationContext.configure(connection).get_current_heads()
    return heads[0] if heads else None


def _pending(scripts: ScriptDirectory, current: str | None, head: str) -> list[str]:
    revs = list(scripts.iterate_revisions(head, current or "base"))
    return [r.revision for r in reversed(revs)]


def _ensure_known(scripts: ScriptDirectory, current: str | None) -> None:
    if current is None:
        return
    try:
        scripts.get_revision(current)
    except Exception as exc:
        raise SchemaMismatch(
            f"the database schema is at migration {current!r}, which this Quarry release does "
            f"not know: it is newer than this release (which knows up to {code_head()!r}). "
            "Upgrade this node to the release that migrated the database.",
            database_revision=current,
            known_head=code_head(),
        ) from exc


def check_schema(engine: Engine) -> str:
    """Refuse to run on a schema other than this release's head (used with skip)."""
    scripts = _scripts()
    head = code_head()
    with engine.connect() as conn:
        current = _database_revision(conn)
    _ensure_known(scripts, current)
    if current != head:
        raise SchemaMismatch(
            f"the database schema is at {current or 'nothing (empty database)'}, older than "
            f"this release needs ({head!r}); run `quarry migrate` (or unset "
            "QUARRY_SKIP_MIGRATIONS).",
            database_revision=current,
            known_head=head,
        )
    return head


def migrate(engine: Engine) -> MigrationOutcome:
    """Bring the schema to this release's head; a no-op when it already is."""
    from alembic import command

    scripts = _scripts()
    head = code_head()
    with engine.connect() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
            conn.commit()
        try:
            current = _database_revision(conn)
            conn.commit()
            _ensure_known(scripts, current)
            pending = _pending(scripts, current, head)
            if pending:
                log.info("migrations: applying %s", ", ".join(pending))
                command.upgrade(_config(conn), "head")
                conn.commit()
                log.info("migrations: applied %d, schema now at %s", len(pending), head)
            else:
                log.info("migrations: schema current at %s", head)
            return MigrationOutcome(applied=pending, head=head)
        finally:
            if postgres:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
                conn.commit()


def prepare_schema(engine: Engine, *, skip_migrations: bool) -> MigrationOutcome | None:
    """What every role does at boot."""
    if skip_migrations:
        check_schema(engine)
        return None
    return migrate(engine)
