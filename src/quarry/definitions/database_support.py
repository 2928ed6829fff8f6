"""Which ``config.yml`` database types Quarry cannot open yet, and why.

Asked twice: when a workspace is compiled (a warning on ``config.yml`` naming the
database and its type, so the author learns it before a run, while the workflows
on other databases still compile) and when a run opens the database
(``quarry.runtime.connectors.support``: a clear connector error, not a crash).
Plain data: no I/O, no driver imports.
"""

from __future__ import annotations

from typing import Any

_NOT_YET: dict[str, str] = {
    "motherduck": (
        "MotherDuck is not supported: it needs DuckDB's motherduck extension, which "
        "Quarry's DuckDB sandbox does not install or load"
    ),
    "airhouse_managed": (
        "airhouse_managed is not supported: its credentials come from Oxy's per-user "
        "provisioning, which Quarry does not have (use type: airhouse with host, user "
        "and password_var)"
    ),
}
_DUCKLAKE = (
    "DuckLake (data_path) is not supported: it needs DuckDB's ducklake extension, which "
    "Quarry's DuckDB sandbox does not install or load"
)


def unsupported_reason(config: Any) -> str | None:
    """Why ``config`` (a database of ``config.yml``) cannot be opened; None if it can."""
    kind = str(getattr(config, "type", ""))
    if kind == "duckdb":
        # Oxy takes dataset, then path, then data_path: DuckLake only when it is alone.
        forms = [getattr(config, key, None) for key in ("dataset", "path", "data_path")]
        return _DUCKLAKE if forms[0] is None and forms[1] is None and forms[2] else None
    return _NOT_YET.get(kind)
