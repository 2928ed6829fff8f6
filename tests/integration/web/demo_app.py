"""The demo app's tables computed directly with DuckDB, and its result stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import duckdb
import jinja2
import pyarrow as pa

from quarry.core.hashing import canonical_json
from quarry.definitions.kinds import Kind
from quarry.definitions.models.app import AppConfig
from quarry.definitions.parse import load_model
from quarry.runtime.apps import app_result_key, build_app_result, resolve_controls
from quarry.store.objects import ObjectStore

APP = "apps/sales_overview"
DATA = f"/api/v1/workspaces/shop/apps/{APP}/data"


def demo_app(root: Path) -> AppConfig:
    import yaml

    body = yaml.safe_load((root / "apps" / "sales_overview.app.yml").read_text())
    return cast(AppConfig, load_model(Kind.APP, body))


def demo_tables(root: Path, app: AppConfig, controls: dict[str, Any]) -> dict[str, pa.Table]:
    """Each ``execute_sql`` task rendered with the controls and run on the demo CSVs."""
    con = duckdb.connect()
    con.execute(f"SET file_search_path = '{root / '.db'}'")
    tables: dict[str, pa.Table] = {}
    for task in app.tasks:
        body = task.model_dump()
        sql = jinja2.Template(body["sql_query"]).render(controls=controls)
        tables[body["name"]] = con.sql(sql).to_arrow_table()
    con.close()
    return tables


def store_demo_result(
    store: ObjectStore,
    root: Path,
    *,
    tenant_id: str,
    workspace_id: str,
    revision_id: str,
    given: dict[str, Any] | None = None,
) -> dict[str, Any]:
    app = demo_app(root)
    controls = resolve_controls(app, given or {})
    tables = demo_tables(root, app, controls)
    doc = build_app_result(app, tables, controls, revision_id=revision_id, app_name=APP)
    key = app_result_key(tenant_id, workspace_id, revision_id, APP, controls)
    store.put(key, canonical_json(doc))
    return cast(dict[str, Any], json.loads(canonical_json(doc)))
