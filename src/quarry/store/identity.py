"""Which PostgreSQL cluster a connection reached, by the cluster's own identity.

``pg_control_system().system_identifier`` is fixed when a cluster is initialised and
is the same for every database, host name and address of that cluster, so comparing
it tells "this is Quarry's state cluster" apart however a target spells its host.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

CLUSTER_IDENTITY_SQL = "SELECT system_identifier::text FROM pg_control_system()"


def state_cluster_identity(engine: Engine) -> str | None:
    """The state database's cluster identity; None if the server will not say."""
    try:
        with engine.connect() as conn:
            value = conn.execute(text(CLUSTER_IDENTITY_SQL)).scalar()
    except SQLAlchemyError:
        return None
    return None if value is None else str(value)


def cluster_identity(cursor: Any) -> str | None:
    """The same identity through a DB-API cursor of any PostgreSQL connection."""
    cursor.execute(CLUSTER_IDENTITY_SQL)
    row = cursor.fetchone()
    return None if row is None or row[0] is None else str(row[0])
