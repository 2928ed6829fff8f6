"""Which ``config.yml`` databases a run cannot open, and why: the answer the
compile gives as a warning (``quarry.definitions.database_support``), given again
when a run opens the database, as a connector error naming the type."""

from __future__ import annotations

from quarry.definitions.database_support import unsupported_reason

__all__ = ["unsupported_reason"]
