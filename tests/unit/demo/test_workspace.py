"""Creating the demo workspace: layout, determinism, refusing to clobber, package data."""

from __future__ import annotations

import csv
import io
from datetime import date
from importlib.resources import files
from pathlib import Path

import pytest

from quarry.demo import DATASET_DIR, REGIONS, create_demo_workspace, demo_files
from quarry.demo.data import (
    CUSTOMER_COUNT,
    FIRST_ORDER_DATE,
    LAST_ORDER_DATE,
    ORDER_COUNT,
    generate_tables,
)
from tests.unit.demo.helpers import load_yaml

EXPECTED_FILES = {
    ".db/customers.csv",
    ".db/orders.csv",
    ".db/products.csv",
    "README.md",
    "agents/analyst.agent.yml",
    "apps/sales_overview.app.yml",
    "config.yml",
    "docs/data_dictionary.md",
    "queries/monthly_revenue.sql",
    "queries/top_products.sql",
    "semantics/orders.view.yml",
    "semantics/sales.topic.yml",
    "workflows/monthly_revenue.workflow.yml",
    "workflows/region_report.procedure.yml",
}


def tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def test_writes_the_whole_workspace(demo_workspace: Path) -> None:
    assert set(tree(demo_workspace)) == EXPECTED_FILES
    assert tree(demo_workspace) == demo_files()


def test_returns_the_target(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "demo"
    assert create_demo_workspace(target) == target
    assert (target / "config.yml").is_file()


def test_same_bytes_every_time(tmp_path: Path) -> None:
    first = tree(create_demo_workspace(tmp_path / "one"))
    second = tree(create_demo_workspace(tmp_path / "two"))
    assert first == second
    assert demo_files() == demo_files()


def test_data_does_not_depend_on_global_random_state() -> None:
    import random

    before = generate_tables()
    random.seed(12345)
    random.random()
    assert generate_tables() == before


def test_accepts_an_empty_existing_folder(tmp_path: Path) -> None:
    create_demo_workspace(tmp_path)
    assert set(tree(tmp_path)) == EXPECTED_FILES


def test_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        create_demo_workspace(tmp_path)
    assert tree(tmp_path) == {"notes.txt": b"mine"}


def test_refuses_a_folder_holding_only_a_hidden_file(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    with pytest.raises(FileExistsError):
        create_demo_workspace(tmp_path)


def test_refuses_a_file(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    target.write_text("not a folder")
    with pytest.raises(FileExistsError, match="not a folder"):
        create_demo_workspace(target, overwrite=True)


def test_overwrite_replaces_demo_files_and_keeps_the_rest(tmp_path: Path) -> None:
    create_demo_workspace(tmp_path)
    (tmp_path / "config.yml").write_text("edited")
    (tmp_path / "mine.sql").write_text("SELECT 1")
    create_demo_workspace(tmp_path, overwrite=True)
    assert (tmp_path / "config.yml").read_bytes() == demo_files()["config.yml"]
    assert (tmp_path / "mine.sql").read_text() == "SELECT 1"


def test_leaves_no_temporary_files(demo_workspace: Path) -> None:
    leftovers = [p for p in demo_workspace.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_template_is_package_data() -> None:
    template = files("quarry.demo") / "template"
    assert template.is_dir()
    assert (template / "config.yml").is_file()
    assert (template / "queries" / "monthly_revenue.sql").read_bytes() == (
        demo_files()["queries/monthly_revenue.sql"]
    )


def test_the_dataset_folder_is_the_one_config_names(demo_workspace: Path) -> None:
    config = load_yaml(demo_workspace / "config.yml")
    [database] = config["databases"]
    assert database["type"] == "duckdb"
    assert database["dataset"].rstrip("/") == DATASET_DIR
    assert config["defaults"]["database"] == database["name"]
    assert (demo_workspace / config["defaults"]["agent"]).is_file()


def test_orders_are_plausible() -> None:
    tables = generate_tables()
    orders = rows(tables["orders.csv"])
    customers = {row["customer_id"]: row for row in rows(tables["customers.csv"])}
    products = {row["product"]: row for row in rows(tables["products.csv"])}

    assert len(orders) == ORDER_COUNT
    assert len(customers) == CUSTOMER_COUNT
    assert list(orders[0]) == [
        "order_id",
        "order_date",
        "customer_id",
        "region",
        "product",
        "category",
        "quantity",
        "unit_price",
    ]
    assert [int(row["order_id"]) for row in orders] == list(range(1, ORDER_COUNT + 1))
    dates = [date.fromisoformat(row["order_date"]) for row in orders]
    assert dates == sorted(dates)
    assert dates[0] >= FIRST_ORDER_DATE
    assert dates[-1] <= LAST_ORDER_DATE
    assert (dates[-1] - dates[0]).days > 700
    assert {row["region"] for row in orders} == set(REGIONS)
    for row in orders:
        customer = customers[row["customer_id"]]
        product = products[row["product"]]
        assert row["region"] == customer["region"]
        assert row["category"] == product["category"]
        assert 1 <= int(row["quantity"]) <= 5
        assert 0 < float(row["unit_price"]) <= float(product["unit_price"])
        assert date.fromisoformat(customer["signup_date"]) <= date.fromisoformat(row["order_date"])
    discounted = sum(r["unit_price"] != products[r["product"]]["unit_price"] for r in orders)
    assert 0 < discounted < len(orders) // 4


def test_csv_uses_unix_line_endings_and_no_trailing_blank_rows() -> None:
    for name, data in generate_tables().items():
        assert b"\r" not in data, name
        assert data.endswith(b"\n"), name
        assert not data.endswith(b"\n\n"), name


def test_regions_match_the_definitions(demo_workspace: Path) -> None:
    procedure = load_yaml(demo_workspace / "workflows/region_report.procedure.yml")
    [loop] = [task for task in procedure["tasks"] if task["type"] == "loop_sequential"]
    assert tuple(loop["values"]) == REGIONS

    app = load_yaml(demo_workspace / "apps/sales_overview.app.yml")
    [control] = app["controls"]
    assert control["options"] == ["All", *REGIONS]
    assert control["default"] in control["options"]


def test_references_between_files_resolve(demo_workspace: Path) -> None:
    config = load_yaml(demo_workspace / "config.yml")
    databases = {database["name"] for database in config["databases"]}
    models = {model["name"] for model in config["models"]}

    agent = load_yaml(demo_workspace / "agents/analyst.agent.yml")
    assert agent["model"] in models
    for tool in agent["tools"]:
        if tool["type"] == "execute_sql":
            assert tool["database"] in databases
        if tool["type"] == "workflow":
            assert (demo_workspace / tool["workflow_ref"]).is_file()
    for context in agent["context"]:
        for source in context["src"]:
            assert (demo_workspace / source).is_file(), source

    view = load_yaml(demo_workspace / "semantics/orders.view.yml")
    assert view["datasource"] in databases
    assert (demo_workspace / DATASET_DIR / view["table"]).is_file()
    topic = load_yaml(demo_workspace / "semantics/sales.topic.yml")
    assert topic["views"] == [view["name"]]
    assert topic["base_view"] == view["name"]

    def check_tasks(tasks: list[dict[str, object]]) -> None:
        for task in tasks:
            if "database" in task:
                assert task["database"] in databases
            if "sql_file" in task:
                assert (demo_workspace / str(task["sql_file"])).is_file()
            if task["type"] == "workflow":
                assert (demo_workspace / str(task["src"])).is_file()
            if task["type"] == "loop_sequential":
                check_tasks(task["tasks"])  # type: ignore[arg-type]

    for path in [
        *demo_workspace.glob("workflows/*.yml"),
        *demo_workspace.glob("apps/*.app.yml"),
    ]:
        check_tasks(load_yaml(path)["tasks"])

    app = load_yaml(demo_workspace / "apps/sales_overview.app.yml")
    task_names = {task["name"] for task in app["tasks"]}
    for block in app["display"]:
        if "data" in block:
            assert block["data"] in task_names


def test_imports_only_the_standard_library_and_quarry_core() -> None:
    import ast
    import sys

    import quarry.demo

    package = Path(quarry.demo.__file__).parent
    for source in sorted(package.glob("*.py")):
        tree_ = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree_):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                allowed = top in sys.stdlib_module_names or module.startswith(
                    ("quarry.core", "quarry.demo")
                )
                assert allowed, f"{source.name} imports {module}"
