"""Compile-level behaviour: errors name the member, values are bound, every dialect
renders, plans are cached, and validation finds what airlayer's validate finds."""

from __future__ import annotations

import statistics
import time
from datetime import date
from typing import Any

import pytest
import sqlglot

from quarry.definitions.models.semantic import TopicConfig, ViewConfig
from quarry.semantic import (
    DIALECTS,
    SemanticError,
    SemanticModel,
    SemanticQuery,
    compile_query,
)
from quarry.semantic.dates import parse_date_value
from tests.integration.semantic.conftest import MODEL, TOPICS, VIEWS


def compile_(query: dict[str, Any], dialect: str = "duckdb", model: SemanticModel = MODEL) -> Any:
    return compile_query(
        model, SemanticQuery.from_request(query), dialect=dialect, today=date(2024, 7, 15)
    )


def error_of(query: dict[str, Any], model: SemanticModel = MODEL) -> str:
    with pytest.raises(SemanticError) as caught:
        compile_(query, model=model)
    assert caught.value.status_code == 400
    assert caught.value.code == "semantic_error"
    return caught.value.message


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"measures": ["orders.revnue"]}, "orders.revnue"),
        ({"measures": ["ordrs.revenue"]}, "ordrs.revenue"),
        ({"measures": ["orders.revenue; DROP TABLE orders"]}, "orders.revenue; DROP TABLE orders"),
        ({"topic": "paid_sales", "measures": ["payments.paid_amount"]}, "payments.paid_amount"),
        ({"measures": ["orders.status"]}, "orders.status"),
        ({"dimensions": ["orders.revenue"]}, "orders.revenue"),
        (
            {
                "measures": ["orders.revenue"],
                "time_dimensions": [{"dimension": "orders.status", "granularity": "month"}],
            },
            "orders.status",
        ),
        (
            {
                "measures": ["orders.revenue"],
                "filters": [{"field": "orders.amount", "op": "gt", "value": "1 OR 1=1"}],
            },
            "orders.amount",
        ),
        (
            {
                "measures": ["orders.revenue"],
                "filters": [{"field": "orders.created_at", "op": "gte", "value": "soon-ish"}],
            },
            "orders.created_at",
        ),
        (
            {
                "measures": ["orders.revenue"],
                "filters": [{"field": "orders.is_gift", "op": "eq", "value": "maybe"}],
            },
            "orders.is_gift",
        ),
        (
            {
                "measures": ["orders.revenue"],
                "filters": [{"field": "orders.amount", "op": "contains", "value": "1"}],
            },
            "orders.amount",
        ),
        (
            {
                "measures": ["orders.revenue"],
                "orders": [{"field": "orders.status", "direction": "asc"}],
            },
            "orders.status",
        ),
        (
            {
                "measures": ["orders.revenue"],
                "filters": [{"field": "orders.status", "op": "in", "values": []}],
            },
            "orders.status",
        ),
    ],
)
def test_bad_query_is_a_semantic_error_naming_the_member(query: dict[str, Any], named: str) -> None:
    assert named in error_of(query)


@pytest.mark.parametrize(
    "body",
    [
        {
            "measures": ["orders.revenue"],
            "time_dimensions": [{"dimension": "orders.created_at", "granularity": "fortnight"}],
        },
        {
            "measures": ["orders.revenue"],
            "filters": [{"field": "orders.status", "op": "like", "value": "x"}],
        },
        {"measures": ["orders.revenue"], "limit": -1},
        {"measure": ["orders.revenue"]},
        {},
    ],
)
def test_malformed_request_is_a_semantic_error_naming_the_field(body: dict[str, Any]) -> None:
    with pytest.raises(SemanticError) as caught:
        SemanticQuery.from_request(body)
    assert caught.value.status_code == 400
    if body.get("time_dimensions"):
        assert "granularity" in caught.value.message


def _diamond() -> SemanticModel:
    """a -> b -> d and a -> c -> d: two equally short paths from a to d."""

    def view(name: str, entities: list[dict[str, str]]) -> ViewConfig:
        dims = sorted({e["key"] for e in entities})
        return ViewConfig.model_validate(
            {
                "name": name,
                "table": name,
                "entities": entities,
                "dimensions": [{"name": k, "type": "number", "expr": k} for k in dims],
                "measures": [{"name": "n", "type": "count"}],
            }
        )

    views = [
        view(
            "a",
            [
                {"name": "a", "type": "primary", "key": "id"},
                {"name": "b", "type": "foreign", "key": "b_id"},
                {"name": "c", "type": "foreign", "key": "c_id"},
            ],
        ),
        view(
            "b",
            [
                {"name": "b", "type": "primary", "key": "id"},
                {"name": "d", "type": "foreign", "key": "d_id"},
            ],
        ),
        view(
            "c",
            [
                {"name": "c", "type": "primary", "key": "id"},
                {"name": "d", "type": "foreign", "key": "d_id"},
            ],
        ),
        view("d", [{"name": "d", "type": "primary", "key": "id"}]),
    ]
    return SemanticModel.from_definitions(views, [])


def test_ambiguous_join_path_is_refused_at_query_and_at_compile_time() -> None:
    model = _diamond()
    message = error_of({"measures": ["a.n"], "dimensions": ["d.id"]}, model=model)
    assert "ambiguous join path" in message and "'d'" in message
    problems = model.validate()
    assert any("ambiguous join path" in p.message for p in problems)


def test_filter_values_are_bound_never_written_into_the_sql() -> None:
    secret = "zz_value_'); DROP TABLE orders; --"
    compiled = compile_(
        {
            "measures": ["orders.revenue"],
            "filters": [{"field": "orders.status", "op": "eq", "value": secret}],
        }
    )
    assert secret not in compiled.text
    assert compiled.params == (secret,)
    assert compiled.text.count(compiled.token) == 2


def test_output_columns_are_named_as_oxy_names_them() -> None:
    compiled = compile_(
        {
            "measures": ["orders.revenue"],
            "dimensions": ["customers.region"],
            "time_dimensions": [{"dimension": "orders.created_at", "granularity": "month"}],
        }
    )
    assert [(c.name, c.member, c.kind) for c in compiled.columns] == [
        ("customers__region", "customers.region", "dimension"),
        ("orders__created_at__month", "orders.created_at", "time_dimension"),
        ("orders__revenue", "orders.revenue", "measure"),
    ]
    assert compiled.datasource == "shop"


FAN_OUT = {
    "measures": ["orders.revenue", "orders.median_amount", "line_items.quantity"],
    "dimensions": ["products.category"],
    "time_dimensions": [{"dimension": "orders.created_at", "granularity": "week"}],
    "filters": [{"field": "customers.name", "op": "contains", "value": "1"}],
}


MOTIF_AND_HAVING = {
    "measures": ["orders.revenue", "payments.paid_amount"],
    "dimensions": ["orders.status"],
    "time_dimensions": [{"dimension": "orders.created_at", "granularity": "month"}],
    "filters": [{"field": "orders.revenue", "op": "gt", "value": 10}],
    "orders": [{"field": "orders.revenue", "direction": "desc"}],
    "limit": 10,
    "motif": "mom",
}


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("query", [FAN_OUT, MOTIF_AND_HAVING], ids=["fan-out", "motif-having"])
def test_every_dialect_renders_sql_it_can_parse(dialect: str, query: dict[str, Any]) -> None:
    if dialect == "mysql" and query is FAN_OUT:
        query = {**query, "measures": ["orders.revenue", "line_items.quantity"]}
    compiled = compile_(query, dialect)
    assert compiled.dialect == dialect
    # Each marker as a string literal: what the driver's placeholder stands for.
    text = compiled.text
    for i in range(len(compiled.params)):
        text = text.replace(f"{compiled.token}{i}{compiled.token}", "'x'")
    assert compiled.token not in text
    sqlglot.parse_one(text, read=dialect)


def test_weeks_start_on_monday_in_every_dialect() -> None:
    week = {
        "measures": ["orders.revenue"],
        "time_dimensions": [{"dimension": "orders.created_at", "granularity": "week"}],
    }
    assert "WEEK(MONDAY)" in compile_(week, "bigquery").text
    assert "toMonday" in compile_(week, "clickhouse").text
    assert "WEEKDAY" in compile_(week, "mysql").text
    assert "DATE_TRUNC('WEEK'" in compile_(week, "postgres").text


def test_median_is_refused_where_the_dialect_has_none() -> None:
    with pytest.raises(SemanticError, match=r"orders\.median_amount"):
        compile_({"measures": ["orders.median_amount"]}, "mysql")
    assert (
        "orders__revenue"
        in compile_({"measures": ["orders.revenue"], "dimensions": ["orders.status"]}, "mysql").text
    )


def test_unknown_dialect_is_refused() -> None:
    with pytest.raises(SemanticError, match="oracle"):
        compile_({"measures": ["orders.revenue"]}, "oracle")


def test_a_view_without_primary_entity_is_not_aggregated_across_a_fan_out() -> None:
    views = [v for v in VIEWS if v.name != "payments"] + [
        ViewConfig.model_validate(
            {
                "name": "payments",
                "table": "payments",
                "entities": [{"name": "order", "type": "foreign", "key": "order_id"}],
                "dimensions": [{"name": "order_id", "type": "number", "expr": "order_id"}],
                "measures": [{"name": "paid_amount", "type": "sum", "expr": "amount"}],
            }
        )
    ]
    model = SemanticModel.from_definitions(views, TOPICS)
    message = error_of(
        {"measures": ["payments.paid_amount"], "dimensions": ["line_items.product_id"]}, model
    )
    assert "payments.paid_amount" in message and "primary entity" in message


def _wide_model(n: int = 100) -> SemanticModel:
    views = []
    for i in range(n):
        entities = [{"name": f"e{i}", "type": "primary", "key": "id"}]
        if i:
            entities.append({"name": f"e{i - 1}", "type": "foreign", "key": "parent_id"})
        views.append(
            ViewConfig.model_validate(
                {
                    "name": f"v{i}",
                    "table": f"t{i}",
                    "entities": entities,
                    "dimensions": [
                        {"name": "id", "type": "number", "expr": "id"},
                        {"name": "parent_id", "type": "number", "expr": "parent_id"},
                        {"name": "label", "type": "string", "expr": "label"},
                        {"name": "at", "type": "datetime", "expr": "at"},
                    ],
                    "measures": [
                        {"name": "total", "type": "sum", "expr": "x"},
                        {"name": "n", "type": "count"},
                    ],
                }
            )
        )
    return SemanticModel.from_definitions(views, [])


def test_compiled_plans_are_cached_p50_under_two_ms_on_a_hundred_view_model() -> None:
    model = _wide_model()
    queries = [
        SemanticQuery.from_request(
            {
                "measures": [f"v{i}.total", f"v{i + 1}.n"],
                "dimensions": [f"v{max(i - 2, 0)}.label"],
                "time_dimensions": [{"dimension": f"v{i}.at", "granularity": "month"}],
                "filters": [{"field": f"v{i}.label", "op": "eq", "value": "x"}],
            }
        )
        for i in range(40)
    ]
    first = [compile_query(model, q, dialect="postgres") for q in queries]
    timings = []
    for q, plan in zip(queries, first, strict=True):
        start = time.perf_counter()
        again = compile_query(
            model, SemanticQuery.from_request(q.model_dump(by_alias=True)), dialect="postgres"
        )
        timings.append(time.perf_counter() - start)
        assert (again.text, again.params) == (plan.text, plan.params)
    assert statistics.median(timings) < 0.002


def test_validate_reports_airlayer_rules_and_references() -> None:
    bad_view = ViewConfig.model_validate(
        {
            "name": "bad",
            "table": "t",
            "sql": "SELECT 1",
            "datasource": "nowhere",
            "entities": [{"name": "bad", "type": "primary", "key": "missing"}],
            "dimensions": [
                {"name": "a", "type": "string", "expr": "a"},
                {"name": "a", "type": "string", "expr": "b"},
                {"name": "c", "type": "string", "expr": "SELECT FROM WHERE ("},
            ],
            "measures": [{"name": "a", "type": "count"}, {"name": "s", "type": "sum"}],
        }
    )
    topic = TopicConfig.model_validate(
        {
            "name": "t",
            "views": ["bad", "ghost"],
            "default_filters": [{"field": "bad.zzz", "eq": {"value": 1}}],
            "security": {"row_filters": [{"member": "orders.tenant", "attribute": "tenant"}]},
        }
    )
    problems = SemanticModel.from_definitions([bad_view], [topic]).validate({"warehouse"})
    text = "\n".join(str(p) for p in problems)
    for expected in (
        "both 'table' and 'sql'",
        "unknown database 'nowhere'",
        "duplicate field name 'a'",
        "not a valid SQL expression",
        "share one namespace",
        "type sum needs an expr",
        "unknown view 'ghost'",
        "bad.zzz",
        "orders.tenant",
    ):
        assert expected in text, expected


def test_the_test_model_is_valid() -> None:
    assert MODEL.validate({"shop"}) == []


def test_catalog_lists_topics_views_and_members() -> None:
    catalog = MODEL.catalog()
    assert {t["name"] for t in catalog["topics"]} == {"shop", "paid_sales", "secure"}
    orders = next(v for v in catalog["views"] if v["name"] == "orders")
    revenue = next(m for m in orders["members"] if m["name"] == "revenue")
    assert revenue["qualified_name"] == "orders.revenue" and revenue["kind"] == "measure"
    created = next(m for m in orders["members"] if m["name"] == "created_at")
    assert created["kind"] == "time"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-05", date(2024, 3, 5)),
        ("today", date(2024, 7, 15)),
        ("yesterday", date(2024, 7, 14)),
        ("7 days ago", date(2024, 7, 8)),
        ("2 weeks ago", date(2024, 7, 1)),
        ("1 month ago", date(2024, 6, 15)),
        ("a year ago", date(2023, 7, 15)),
        ("in 3 days", date(2024, 7, 18)),
        ("last month", date(2024, 6, 1)),
        ("this quarter", date(2024, 7, 1)),
        ("next year", date(2025, 1, 1)),
        ("last week", date(2024, 7, 8)),
        ("last monday", date(2024, 7, 8)),
        ("next friday", date(2024, 7, 19)),
    ],
)
def test_relative_dates(text: str, expected: date) -> None:
    assert parse_date_value(text, date(2024, 7, 15)) == expected  # a Monday


def test_through_picks_one_of_two_equally_short_paths() -> None:
    model = _diamond()
    compiled = compile_(
        {"measures": ["a.n"], "dimensions": ["d.id"], "through": ["c"]}, model=model
    )
    assert 'JOIN c AS "c"' in compiled.text and 'JOIN b AS "b"' not in compiled.text


def test_a_variable_without_a_value_is_named() -> None:
    message = error_of({"measures": ["orders.orders_over"]})
    assert "min_amount" in message


def test_a_time_zone_that_is_not_an_iana_name_is_refused() -> None:
    # Real zones are supported (tests/integration/semantic/test_airlayer_extras.py).
    assert "Europe/Olso" in error_of({"measures": ["orders.revenue"], "timezone": "Europe/Olso"})


def test_entity_keys_may_name_columns() -> None:
    views = [
        ViewConfig.model_validate(
            {
                "name": "orders",
                "table": "orders",
                "entities": [{"name": "customer", "type": "foreign", "key": "customer_id"}],
                "dimensions": [{"name": "status", "type": "string", "expr": "status"}],
                "measures": [{"name": "n", "type": "count"}],
            }
        ),
        ViewConfig.model_validate(
            {
                "name": "customers",
                "table": "customers",
                "entities": [{"name": "customer", "type": "primary", "key": "id"}],
                "dimensions": [{"name": "region", "type": "string", "expr": "region"}],
            }
        ),
    ]
    model = SemanticModel.from_definitions(views, [])
    compiled = compile_({"measures": ["orders.n"], "dimensions": ["customers.region"]}, model=model)
    assert '"orders".customer_id = "customers".id' in compiled.text


def test_saved_query_steps_compile_in_order() -> None:
    from quarry.definitions.models.semantic import SavedQueryConfig
    from quarry.semantic import compile_saved_query

    saved = SavedQueryConfig.model_validate(
        {
            "name": "investigation",
            "steps": [
                {
                    "name": "trend",
                    "query": {
                        "measures": ["orders.revenue"],
                        "time_dimensions": [
                            {"dimension": "orders.created_at", "granularity": "month"}
                        ],
                        "motif": "mom",
                    },
                },
                {
                    "name": "by_region",
                    "query": {"measures": ["orders.revenue"], "dimensions": ["customers.region"]},
                },
            ],
        }
    )
    inline = SavedQueryConfig.model_validate({"name": "one", "measures": ["orders.revenue"]})
    broken = SavedQueryConfig.model_validate(
        {"name": "broken", "steps": [{"name": "s", "query": {"measures": ["orders.nope"]}}]}
    )
    model = SemanticModel.from_definitions(VIEWS, TOPICS, saved_queries=[saved, inline, broken])
    steps = compile_saved_query(model, "investigation", dialect="postgres")
    assert [name for name, _ in steps] == ["trend", "by_region"]
    assert "previous_value" in steps[0][1].text
    assert [name for name, _ in compile_saved_query(model, "one", dialect="duckdb")] == ["one"]
    with pytest.raises(SemanticError, match=r"step 's'.*orders\.nope"):
        compile_saved_query(model, "broken", dialect="duckdb")


def test_a_query_that_selects_nothing_is_refused() -> None:
    assert "selects nothing" in error_of({"time_dimensions": [{"dimension": "orders.created_at"}]})


def test_like_patterns_escape_wildcards_the_way_each_dialect_reads_them() -> None:
    query = {
        "measures": ["orders.revenue"],
        "filters": [{"field": "orders.status", "op": "contains", "value": "50%_off!"}],
    }
    duck = compile_(query, "duckdb")
    assert duck.params == ("%50!%!_off!!%",) and "ESCAPE '!'" in duck.text
    big = compile_(query, "bigquery")
    assert big.params == ("%50\\%\\_off!%",) and "ESCAPE" not in big.text


def test_marker_like_text_in_a_definition_is_only_text() -> None:
    view = ViewConfig.model_validate(
        {
            "name": "v",
            "table": "t",
            "entities": [],
            "dimensions": [{"name": "d", "type": "string", "expr": "'__qp__0__qp__'"}],
        }
    )
    model = SemanticModel.from_definitions([view], [])
    compiled = compile_(
        {"dimensions": ["v.d"], "filters": [{"field": "v.d", "op": "eq", "value": "x"}]},
        model=model,
    )
    assert compiled.token != "__qp__" and compiled.token not in "'__qp__0__qp__'"
    assert compiled.params == ("x",) and "'__qp__0__qp__'" in compiled.text


def test_period_over_period_on_bigquery_shifts_timestamps_through_datetime() -> None:
    query = {
        "measures": ["orders.revenue"],
        "time_dimensions": [{"dimension": "orders.created_at", "granularity": "month"}],
        "motif": "yoy",
    }
    text = compile_(query, "bigquery").text
    assert (
        "TIMESTAMP(DATETIME_SUB(DATETIME(`b`.`orders__created_at__month`), INTERVAL 1 YEAR))"
        in text
    )


def test_composite_keys_join_and_deduplicate_on_every_part() -> None:
    def view(
        name: str, entities: list[dict[str, Any]], measures: list[dict[str, str]]
    ) -> ViewConfig:
        return ViewConfig.model_validate(
            {
                "name": name,
                "table": name,
                "entities": entities,
                "dimensions": [
                    {"name": k, "type": "number", "expr": k} for k in ("shop_id", "order_no", "sku")
                ],
                "measures": measures,
            }
        )

    orders = view(
        "orders",
        [{"name": "order", "type": "primary", "keys": ["shop_id", "order_no"]}],
        [{"name": "total", "type": "sum", "expr": "amount"}],
    )
    lines = view(
        "lines", [{"name": "order", "type": "foreign", "keys": ["shop_id", "order_no"]}], []
    )
    model = SemanticModel.from_definitions([orders, lines], [])
    text = compile_({"measures": ["orders.total"], "dimensions": ["lines.sku"]}, model=model).text
    assert '"orders".shop_id = "lines".shop_id AND "orders".order_no = "lines".order_no' in text
    assert 'AS "__key0"' in text and 'AS "__key1"' in text  # each order counted once per sku


@pytest.mark.parametrize(
    ("direction", "desc"), [("DESC", True), ("descending", True), ("asc", False), ("up", False)]
)
def test_order_direction_is_read_as_oxy_reads_it(direction: str, desc: bool) -> None:
    query = SemanticQuery.from_request(
        {
            "measures": ["orders.revenue"],
            "orders": [{"field": "orders.revenue", "direction": direction}],
        }
    )
    assert (query.orders[0].direction == "desc") is desc
