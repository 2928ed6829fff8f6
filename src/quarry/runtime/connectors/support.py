"""Which ``config.yml`` databases Quarry cannot open yet, and why.

One place for the answer, asked twice: when a workspace is compiled (a problem on
``config.yml`` naming the database and its type, so the author learns it before a
run) and when a run opens the database (a :class:`ConnectorError` instead of a
crash). No I/O and no driver imports.
"""

from __future__ import annotations

from typing import Any

_NOT_YET: dict[str, str] = {
    "bigquery": "BigQuery is not supported yet (no BigQuery connector in Quarry)",
    "snowflake": "Snowflake is not supported yet (no Snowflake connector in Quarry)",
    "domo": "Domo is not supported yet (no Domo connector in Quarry)",
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
    if kind == "duckdb" and getattr(config, "data_path", None) is not None:
        return _DUCKLAKE
    return _NOT_YET.get(kind)
