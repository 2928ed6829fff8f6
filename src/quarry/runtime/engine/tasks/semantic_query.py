"""``semantic_query``: a topic's measures by dimensions, compiled to SQL and run.

As Oxy does it (``semantic_builder.rs``): the topic, members, order fields and time
dimensions are templates rendered with the step's names, ``variables`` are
evaluated the same way (a string that renders to nothing keeps its text), and
fields without a view are qualified (see :func:`_qualify`). Quarry also renders string
filter values, so an app control can feed a filter (``value: "{{ region }}"``);
whatever they render to is bound as a parameter, never spliced into the SQL. The
query runs on the database its views name (``datasource``), in that database's
dialect, with the run's tenant as the row-filter principal.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from quarry.catalog.reader import Catalog
from quarry.catalog.semantic import SemanticModels
from quarry.definitions.models.tasks import SemanticQueryTask
from quarry.runtime.engine.context import RunContext, Scope
from quarry.runtime.engine.errors import TemplateFailed
from quarry.runtime.engine.exports import deliver
from quarry.runtime.engine.results import StepResult, TableOutput
from quarry.runtime.engine.templating import TemplateProblem, evaluate, render_text
from quarry.runtime.semantic.service import compile_for
from quarry.semantic import SemanticModel, SemanticQuery

_models: weakref.WeakKeyDictionary[Catalog, SemanticModels] = weakref.WeakKeyDictionary()
_models_lock = threading.Lock()


def models_for(catalog: Catalog) -> SemanticModels:
    """One per-revision model cache per catalog (per process, in practice)."""
    with _models_lock:
        found = _models.get(catalog)
        if found is None:
            found = _models[catalog] = SemanticModels(catalog)
        return found


def _qualify(field: str, topic: str | None, model: SemanticModel | None) -> str:
    """``revenue`` -> ``<view>.revenue``: Oxy writes ``<topic>.revenue``, which names a
    member only when a view is called like the topic; Quarry takes the one view of
    the topic that has such a member (several, or none: ``<topic>.revenue``, which
    the compiler reports by name)."""
    if "." in field or topic is None:
        return field
    if model is not None and topic in model.topics:
        owners = [v for v in model.topic(topic).views if f"{v}.{field}" in model.members]
        if len(owners) == 1:
            return f"{owners[0]}.{field}"
    return f"{topic}.{field}"


def _render_value(value: Any, names: dict[str, Any]) -> Any:
    if isinstance(value, str) and "{" in value:
        return evaluate(value, names)
    if isinstance(value, list):
        return [_render_value(v, names) for v in value]
    return value


def _variables(task: SemanticQueryTask, names: dict[str, Any]) -> dict[str, Any] | None:
    if task.variables is None:
        return None
    rendered: dict[str, Any] = {}
    for key, raw in task.variables.items():
        value = evaluate(raw, names) if isinstance(raw, str) else raw
        rendered[key] = raw if value is None else value
    return rendered


def build_query(
    task: SemanticQueryTask, names: dict[str, Any], model: SemanticModel | None = None
) -> SemanticQuery:
    """The task's query with every template rendered; may raise TemplateProblem."""

    def text(value: str) -> str:
        return render_text(value, names).strip() if "{" in value else value

    topic = text(task.topic) if task.topic is not None else None
    filters = []
    for f in task.filters:
        item = f.model_dump(by_alias=True)
        item["field"] = _qualify(text(f.field), topic, model)
        filters.append({k: _render_value(v, names) for k, v in item.items()})
    body: dict[str, Any] = {
        "topic": topic,
        "measures": [_qualify(text(m), topic, model) for m in task.measures],
        "dimensions": [_qualify(text(d), topic, model) for d in task.dimensions],
        "time_dimensions": [
            {"dimension": _qualify(text(t.dimension), topic, model), "granularity": t.granularity}
            for t in task.time_dimensions
        ],
        "filters": filters,
        "orders": [
            {"field": _qualify(text(o.field), topic, model), "direction": o.direction}
            for o in task.orders
        ],
        "limit": task.limit,
        "offset": task.offset,
        "variables": _variables(task, names),
    }
    return SemanticQuery.from_request(body)


def run(ctx: RunContext, task: SemanticQueryTask, scope: Scope, key: str) -> StepResult:
    names = scope.template_context()
    model = models_for(ctx.source.catalog).model(ctx.source.workspace, ctx.source.revision_id)
    try:
        query = build_query(task, names, model)
    except TemplateProblem as exc:
        raise TemplateFailed(str(exc)) from exc
    principal = {"tenant": ctx.source.tenant_id}
    prepared = compile_for(None, ctx.source, query, principal, model=model)
    bound = prepared.bound
    connector = ctx.connections.get(prepared.target.datasource)
    table = ctx.query(connector, bound, key, task.name)  # a timeout or cancel interrupts it
    output = TableOutput(table)
    shown = bound.display()
    meta = {
        "database": prepared.target.datasource,
        "topic": query.topic,
        "sql": shown,
        "rows": table.num_rows,
        "exports": deliver(ctx, task.export, scope, output, sql=shown),
    }
    return StepResult(output, meta)
