"""Quarry's semantic compiler: views and topics -> SQL with bound values.

The interface (everything else in the package is an implementation detail)::

    model = SemanticModel.from_definitions(views, topics, motifs, saved_queries)
    model.catalog()                  # JSON: topics, views, members, motifs, saved queries
    model.validate(databases)        # [SemanticProblem(kind, name, field, message)]
    model.row_filters_for(topic, principal_attributes)   # [RowFilter] from ``security:``
    query = SemanticQuery.from_request(json_body)        # Oxy task or airlayer shape
    compiled = compile_query(model, query, dialect="duckdb", row_filters=...)
    compile_saved_query(model, "name", dialect=...)      # [(step name, CompiledQuery)]
    saved_step_query(model, "name", step=None)          # a saved query's step, to run
    BoundSql(text=compiled.text, params=compiled.params, token=compiled.token)

``SemanticModel`` is built once per revision and is immutable; compiled plans are
cached on it per (query shape, dialect, row filters): a query differing only in its
values binds new parameters into the cached plan. ``CompiledQuery.columns`` names
the result columns as Oxy does (``view__member``, ``view__member__granularity``).
Every mistake in a query is a :class:`SemanticError` (HTTP 400) naming the member
or field, raised before any SQL exists. Results are fan-out safe: see
:mod:`quarry.semantic.compiler` and docs/semantic-layer.md. This package imports
only ``quarry.core`` and ``quarry.definitions``, and no database or network library.
"""

from quarry.semantic.compiler import CompiledQuery, OutputColumn, compile_query
from quarry.semantic.dialects import DIALECTS, normalize_dialect
from quarry.semantic.errors import SemanticError, SemanticProblem
from quarry.semantic.model import Member, RowFilter, SemanticModel
from quarry.semantic.query import Filter, FilterGroup, Order, SemanticQuery, TimeDimension
from quarry.semantic.saved import compile_saved_query, saved_step_query

__all__ = [
    "DIALECTS",
    "CompiledQuery",
    "Filter",
    "FilterGroup",
    "Member",
    "Order",
    "OutputColumn",
    "RowFilter",
    "SemanticError",
    "SemanticModel",
    "SemanticProblem",
    "SemanticQuery",
    "TimeDimension",
    "compile_query",
    "compile_saved_query",
    "normalize_dialect",
    "saved_step_query",
]
