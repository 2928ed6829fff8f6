"""The complete declared schema: every table module registers on one MetaData.

Alembic's environment and the schema-equals-migrations test import this module, so
a table declared anywhere in ``quarry.store`` but not imported here is caught.
"""

from __future__ import annotations

import quarry.store.eval_results  # (quarry test results)
import quarry.store.schedule_tables
import quarry.store.threads  # noqa: F401  (agent threads and messages)
from quarry.store import auth_tables, factory_tables, queue_tables, run_tables, tables  # noqa: F401
from quarry.store.tables import metadata

__all__ = ["metadata", "tables"]
