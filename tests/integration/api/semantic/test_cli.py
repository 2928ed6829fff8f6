"""``quarry query`` and ``quarry semantic catalog`` as a user runs them: processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.api.semantic.shop import (
    REVENUE_BY_REGION_FOR_STATUS,
    hand_written,
    make_shop,
    same,
)

QUARRY = [sys.executable, "-m", "quarry"]


def quarry(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QUARRY_AUTH": "open", "COLUMNS": "200", "QUARRY_LOG_LEVEL": "WARNING"}
    return subprocess.run(
        [*QUARRY, *args], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


def test_query_and_catalog_from_the_command_line(tmp_path: Path) -> None:
    root = make_shop(tmp_path / "shop")
    compiled = quarry(root, "compile", ".", "--name", "shop")
    assert compiled.returncode == 0, compiled.stderr
    common = ["query", "-w", "shop", "--topic", "sales", "-m", "orders.revenue"]
    by_region = [*common, "-d", "customers.region", "--filter", "orders.status=returned"]

    as_json = quarry(root, *by_region, "--order", "customers.region", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    got = [tuple(r.values()) for r in json.loads(as_json.stdout)]
    assert same(got, hand_written(root, REVENUE_BY_REGION_FOR_STATUS, "returned"))

    table = quarry(root, *by_region)
    assert table.returncode == 0, table.stderr
    assert "customers__region" in table.stdout and "West" in table.stdout
    assert "4 row(s)" in table.stderr

    sql = quarry(
        root,
        *common,
        "--time",
        "orders.order_date:month",
        "--filter",
        "orders.order_id>=100",
        "--sql",
    )
    assert sql.returncode == 0, sql.stderr
    assert "$1" in sql.stdout and "-- params: [100]" in sql.stdout
    assert "DATE_TRUNC" in sql.stdout.upper() and "warehouse (duckdb)" in sql.stdout

    bad = quarry(root, *common, "-d", "orders.nope")
    assert bad.returncode == 1 and "orders.nope" in bad.stderr
    malformed = quarry(root, *common, "--filter", "orders.status ~ x")
    assert malformed.returncode == 1 and "--filter" in malformed.stderr

    catalog = quarry(root, "semantic", "catalog", "-w", "shop")
    assert catalog.returncode == 0, catalog.stderr
    assert "tenant_sales" in catalog.stdout and "Order amounts in USD." in catalog.stdout
