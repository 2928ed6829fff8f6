"""Versioned migrations, run by ``quarry migrate`` or at boot.

Co-booting nodes on Postgres serialise on an advisory lock; the first applies the
pending migrations and the rest find the schema current and do nothing. A node that
meets a schema it does not know (newer than its release) refuses to start.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text

from quarry.core.errors import SchemaMismatch

if TYPE_CHECKING:  # alembic is imported only when a schema is not already current
    from alembic.config import Config
    from alembic.script import ScriptDirectory

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
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "quarry.store:migrations")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def code_head() -> str:
    heads = _scripts().get_heads()
    if len(heads) != 1:
        raise SchemaMismatch(f"migration history has {len(heads)} heads; expected one")
    return heads[0]


def _database_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

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


_REVISION = re.compile(r"^revision(?:\s*:[^=\n]*)?\s*=\s*[\"']([^\"']+)[\"']", re.M)
_DOWN_REVISION = re.compile(
    r"^down_revision(?:\s*:[^=\n]*)?\s*=\s*(?:None|[\"']([^\"']+)[\"'])\s*$", re.M
)


def declared_head() -> str | None:
    """The newest migration, read from the version files' ``revision`` and
    ``down_revision`` lines without importing alembic (which costs more than the rest
    of a local ``quarry run``'s start-up). None unless they read as exactly one head."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for entry in (resources.files("quarry.store.migrations") / "versions").iterdir():
        if not entry.name.endswith(".py") or entry.name.startswith("__"):
            continue
        source = entry.read_text(encoding="utf-8")
        revision, down = _REVISION.search(source), _DOWN_REVISION.search(source)
        if revision is None or down is None:
            return None
        revisions.add(revision.group(1))
        if down.group(1):
            parents.add(down.group(1))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _stamped_revision(engine: Engine) -> str | None:
    """The database's one ``alembic_version`` row (None if absent, several or unreadable)."""
    try:
        with engine.connect() as conn:
            value = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    except Exception:
        return None
    return str(value)


def prepare_schema(engine: Engine, *, skip_migrations: bool) -> MigrationOutcome | None:
    """What every role does at boot. A database already at this release's head is
    recognised with one query and no alembic import; anything else takes the full
    path (migrate, or check and refuse)."""
    head = declared_head()
    if head is not None and _stamped_revision(engine) == head:
        if skip_migrations:
            return None
        log.info("migrations: schema current at %s", head)
        return MigrationOutcome(applied=[], head=head)
    if skip_migrations:
        check_schema(engine)
        return None
    return migrate(engine)
