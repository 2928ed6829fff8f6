"""Saved queries (``*.query.yml``): named steps, each a semantic query, compiled in order."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from quarry.semantic.compiler import CompiledQuery, compile_query
from quarry.semantic.errors import SemanticError
from quarry.semantic.model import RowFilter, SemanticModel
from quarry.semantic.query import SemanticQuery


def compile_saved_query(
    model: SemanticModel,
    name: str,
    *,
    dialect: str,
    row_filters: Sequence[RowFilter] = (),
    today: date | None = None,
) -> list[tuple[str, CompiledQuery]]:
    """Each step's name and compiled query; an error names the step that failed."""
    saved = model.saved_queries.get(name)
    if saved is None:
        known = ", ".join(sorted(model.saved_queries)) or "none"
        raise SemanticError(f"unknown saved query '{name}' (known: {known})", saved_query=name)
    compiled = []
    for step in saved.steps:
        try:
            query = SemanticQuery.from_request(step.query)
            plan = compile_query(
                model, query, dialect=dialect, row_filters=row_filters, today=today
            )
        except SemanticError as exc:
            raise SemanticError(
                f"saved query '{name}' step '{step.name}': {exc.message}", saved_query=name
            ) from None
        compiled.append((step.name, plan))
    return compiled
