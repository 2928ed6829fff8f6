"""``semantic_query``: the model asks the semantic layer for measures by dimensions
of a topic; Quarry compiles the SQL (values bound, never spliced) and runs it.

As Oxy's tool: the arguments are a semantic query (``topic``, ``dimensions``,
``measures``, ``time_dimensions``, ``filters``, ``orders``, ``limit``, ``offset``);
a ``topic:`` on the tool pins the topic. The tool's description carries the topic
catalog (topics, their dimensions and measures, with descriptions), so the model
knows what it may ask for. A query the layer cannot answer (an unknown member, a
bad filter) is the tool's error, which the model reads and fixes. The tenant is the
row-filter principal, as for every semantic query of a run.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pyarrow as pa

from quarry.agents.providers.base import ToolSpec
from quarry.agents.tools.base import ToolFailed, ToolOutcome
from quarry.agents.tools.readonly import SqlLimits
from quarry.agents.tools.sql import StatementGuard, render_table, unguarded
from quarry.core.errors import QuarryError
from quarry.definitions.models.agent import SemanticQueryTool
from quarry.runtime.connectors.base import ConnectorError
from quarry.runtime.connectors.registry import Connections
from quarry.runtime.engine.tasks.semantic_query import models_for
from quarry.runtime.semantic.service import compile_for
from quarry.semantic import SemanticModel, SemanticQuery

DESCRIPTION = "Query the database via the semantic layer."
CATALOG_CHARS = 6000
"""The catalog in the description is cut here (the cut is said)."""

_FIELDS = {"type": "array", "items": {"type": "string"}}
PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "topic": {"type": "string", "description": "The topic to query."},
        "dimensions": {**_FIELDS, "description": "Dimensions to group by, as view.member."},
        "measures": {**_FIELDS, "description": "Measures to compute, as view.member."},
        "time_dimensions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "dimension": {"type": "string"},
                    "granularity": {
                        "type": "string",
                        "enum": ["year", "quarter", "month", "week", "day", "hour"],
                    },
                },
                "required": ["dimension"],
            },
        },
        "filters": {
            "type": "array",
            "description": 'Filters such as {"field": "orders.region", "op": "eq", '
            '"value": "North"} (op: eq, neq, gt, gte, lt, lte, in, not_in with values, '
            "date_range with from/to).",
            "items": {"type": "object"},
        },
        "orders": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"},
                    "direction": {"type": "string", "enum": ["asc", "desc"]},
                },
                "required": ["field"],
            },
        },
        "limit": {"type": "integer", "minimum": 1},
        "offset": {"type": "integer", "minimum": 0},
    },
    "required": ["measures"],
}


def catalog_text(model: SemanticModel, topic: str | None = None) -> str:
    """Topics with their members, one line each, for the model to read."""
    lines: list[str] = []
    if topic is not None and topic in model.topics:
        topics = [model.topics[topic]]
    else:
        topics = list(model.topics.values())
    for item in topics:
        head = f"Topic {item.name}"
        lines.append(f"{head}: {item.description}" if item.description else head)
        for member in model.members.values():
            if member.view not in item.views:
                continue
            text = f"  {member.kind} {member.view}.{member.name} ({member.type})"
            described = member.definition.description
            lines.append(f"{text}: {described}" if described else text)
    text = "\n".join(lines)
    if len(text) > CATALOG_CHARS:
        text = text[:CATALOG_CHARS].rsplit("\n", 1)[0] + "\n[The catalog is cut here.]"
    return text


class SemanticQueryExecutor:
    def __init__(
        self,
        config: SemanticQueryTool,
        connections: Connections,
        limits: SqlLimits,
        guard: StatementGuard | None = None,
    ) -> None:
        self.topic = config.topic
        self.connections = connections
        self.source = connections.source
        self.limits = limits
        self.guard = guard or unguarded
        catalog = catalog_text(self._model(), config.topic)
        description = config.description or DESCRIPTION
        self.spec = ToolSpec(
            config.name or "semantic_query",
            f"{description}\nWhat you may ask for:\n{catalog}" if catalog else description,
            PARAMETERS,
        )

    def _model(self) -> SemanticModel:
        source = self.source
        return models_for(source.catalog).model(source.workspace, source.revision_id)

    async def call(self, arguments: dict[str, Any]) -> ToolOutcome:
        return await asyncio.to_thread(self._call, arguments)

    def _call(self, arguments: dict[str, Any]) -> ToolOutcome:
        body = dict(arguments)
        if self.topic is not None:
            body["topic"] = self.topic
        cap = self.limits.row_cap + 1
        given = body.get("limit")
        body["limit"] = min(given, cap) if isinstance(given, int) and given > 0 else cap
        model = self._model()
        try:
            query = SemanticQuery.from_request(body)
            prepared = compile_for(
                None, self.source, query, {"tenant": self.source.tenant_id}, model=model
            )
            connector = self.connections.get(prepared.target.datasource)
        except QuarryError as exc:
            raise ToolFailed(exc.message) from None
        bound = prepared.bound
        table = self._run(connector, bound)
        text, detail = render_table(table, self.limits)
        return ToolOutcome(
            text,
            {
                "database": prepared.target.datasource,
                "topic": query.topic,
                "sql": bound.display(),
                **detail,
            },
        )

    def _run(self, connector: Any, bound: Any) -> pa.Table:
        timer = threading.Timer(self.limits.timeout, connector.interrupt)
        timer.daemon = True
        timer.start()
        try:
            with self.guard(connector):
                result: pa.Table = connector.query(bound)
                return result
        except ConnectorError as exc:
            if not timer.is_alive():
                raise ToolFailed(
                    f"the query ran longer than {self.limits.timeout:g}s and was stopped"
                ) from None
            raise ToolFailed(f"the database refused the query: {exc.message}") from None
        finally:
            timer.cancel()
