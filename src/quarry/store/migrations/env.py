"""Alembic environment: always run with a connection handed in by quarry.store.migrate."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context

from quarry.store.schema import metadata
from quarry.store.types import UtcDateTime


def _render_item(type_: str, obj: Any, _autogen_context: Any) -> str | Literal[False]:
    """Migrations are frozen history: render Quarry's own column types as the plain
    SQLAlchemy types they store, so no migration imports application code."""
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    render_item=_render_item,
)
with context.begin_transaction():
    context.run_migrations()
