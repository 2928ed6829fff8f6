"""Routing agents (``type: routing``), as Oxy's: each route — an agent, a workflow
or a semantic topic of the revision, named by path or glob — becomes a tool, and the
model picks the one that answers the question.

* tool names are the route's path made a function name (``agents/sales.agent.yml``
  -> ``agents_sales_agent``), descriptions the route's own ``description``;
* ``synthesize_results: true`` (the default): the model reads the route's output and
  answers; ``false``: the first route's output is the answer, as it came;
* ``route_fallback``: a route asked with the question when the model called no route;
* a ``.sql`` file is a route as in Oxy: an ``execute_sql`` tool whose SQL is the
  file's, fixed (the tool takes no arguments, so the model cannot change the query),
  described by the file's text, on the database its ``oxy:`` header names
  (``/* oxy: {database: local, embed: ...} */`` at the top of the file: what Oxy's
  retrieval index records for the file as ``sql::<database>``). A file without a
  database in its header, or naming a database ``config.yml`` does not have, is not
  offered and is named so (Oxy logs it and skips the route). The SQL runs read-only
  like the model's own.

With more routes than ``top_k`` (default 4, as Oxy), only the ``top_k`` most similar
to the question are offered (:func:`narrow_routes`; embeddings from
:mod:`quarry.agents.embeddings`, the routes' vectors cached per revision). The
header check is shared with the compiler (``quarry.definitions.sql_routes``).
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
import math
import re
import threading
from collections import OrderedDict
from typing import Any

from quarry.agents.embeddings import Embedder, EmbeddingFailed, make_embedder
from quarry.agents.loop import TurnJournal
from quarry.agents.providers.base import ModelNotConfigured, ToolSpec
from quarry.agents.tools.agent import AskAgent
from quarry.agents.tools.base import AgentTool, ToolOutcome
from quarry.agents.tools.readonly import SqlLimits
from quarry.agents.tools.semantic import SemanticQueryExecutor
from quarry.agents.tools.sql import ExecuteSql, StatementGuard
from quarry.agents.tools.toolbox import Toolbox
from quarry.agents.tools.workflow import RunWorkflow
from quarry.core.errors import NotFound
from quarry.definitions.kinds import Kind, classify_path, definition_name
from quarry.definitions.models.agent import AgentTool as AgentToolConfig
from quarry.definitions.models.agent import (
    ExecuteSqlTool,
    RoutingAgentConfig,
    SemanticQueryTool,
    WorkflowTool,
)
from quarry.definitions.sql_routes import route_header_problem, sql_file_database, sql_file_embed
from quarry.runtime.connectors.registry import Connections
from quarry.runtime.connectors.secrets import SecretResolver
from quarry.runtime.source import RevisionSource, normalise_path

DEFAULT_INSTRUCTIONS = (
    "You route questions. Call the one tool whose description fits the question best, "
    "with the question (or what the tool needs to answer it)."
)


def function_name(path: str) -> str:
    """``agents/sales.agent.yml`` -> ``agents_sales_agent``, ``queries/top.sql`` ->
    ``queries_top`` (a valid function name: the path without its last extension)."""
    stem = re.sub(r"\.(yml|yaml|sql)$", "", path)
    return re.sub(r"[^A-Za-z0-9_-]", "_", stem)[:64]


def _description(source: RevisionSource, kind: Kind, path: str) -> tuple[str, Any]:
    model = source.definition(kind, _names(source).get(path) or definition_name(path, kind))
    return str(getattr(model, "description", None) or ""), model


def _names(source: RevisionSource) -> dict[str, str]:
    """Definition name by file path, for the revision's definitions."""
    listing = source.catalog.definitions(source.workspace, source.revision_id, None)
    return {d["path"]: d["name"] for d in json.loads(listing.body)["definitions"]}


def route_paths(source: RevisionSource, routes: list[str]) -> list[str]:
    """The revision's definitions and files the routes name (paths or globs), in
    route order."""
    paths = sorted(set(_names(source)) | {row.path for row in source.files()})
    found: list[str] = []
    for route in routes:
        pattern = normalise_path(route)
        for path in paths:
            if fnmatch.fnmatchcase(path, pattern) and path not in found:
                found.append(path)
    return found


NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


class RouteNotOffered(Exception):
    """A route that resolves to no tool; ``str()`` says why."""


class SqlRoute(ExecuteSql):
    """``execute_sql`` with the file's SQL fixed: the model's arguments are ignored."""

    def __init__(
        self,
        path: str,
        sql: str,
        config: ExecuteSqlTool,
        connections: Connections,
        limits: SqlLimits,
        guard: StatementGuard | None,
    ) -> None:
        super().__init__(config, connections, limits, guard)
        self.path = path
        self.sql = sql
        self.spec = ToolSpec(self.spec.name, self.spec.description, NO_PARAMETERS)

    async def call(self, arguments: dict[str, Any]) -> ToolOutcome:
        outcome = await super().call({"sql": self.sql})
        return ToolOutcome(outcome.content, {**outcome.detail, "sql_file": self.path})


def _sql_route(
    source: RevisionSource,
    path: str,
    connections: Connections,
    limits: SqlLimits,
    guard: StatementGuard | None,
) -> SqlRoute:
    text = source.file_bytes(path).decode("utf-8", "replace")
    why = route_header_problem(text, [db.name for db in source.config.databases])
    if why is not None:
        raise RouteNotOffered(why)
    database = sql_file_database(text)
    assert database is not None
    config = ExecuteSqlTool(
        type="execute_sql", name=function_name(path), description=text, database=database
    )
    return SqlRoute(path, text, config, connections, limits, guard)


def _route_tool(
    source: RevisionSource,
    path: str,
    connections: Connections,
    limits: SqlLimits,
    guard: StatementGuard | None,
) -> AgentTool | None:
    if path.endswith(".sql"):
        return _sql_route(source, path, connections, limits, guard)
    kind = classify_path(path)
    name = function_name(path)
    if kind is Kind.AGENT:
        described, _ = _description(source, kind, path)
        config = AgentToolConfig(type="agent", name=name, description=described, agent_ref=path)
        return AskAgent(config, connections, limits, guard)
    if kind is Kind.WORKFLOW:
        described, _ = _description(source, kind, path)
        workflow = WorkflowTool(
            type="workflow", name=name, description=described, workflow_ref=path
        )
        return RunWorkflow(workflow, connections, limits)
    if kind is Kind.TOPIC:
        described, topic = _description(source, kind, path)
        semantic = SemanticQueryTool(
            type="semantic_query", name=name, description=described or None, topic=topic.name
        )
        return SemanticQueryExecutor(semantic, connections, limits, guard)
    return None


def routing_toolbox(
    source: RevisionSource,
    agent: RoutingAgentConfig,
    connections: Connections,
    limits: SqlLimits | None = None,
    guard: StatementGuard | None = None,
) -> Toolbox:
    limits = limits or SqlLimits()
    box = Toolbox()
    for path in route_paths(source, agent.routes):
        try:
            tool = _route_tool(source, path, connections, limits, guard)
        except RouteNotOffered as exc:
            box.routes_left_out.append(f"{path}: {exc}")
            continue
        except NotFound:
            tool = None
        if tool is None:
            box.routes_left_out.append(f"{path}: not an agent, workflow, topic or .sql file")
            continue
        name = tool.spec.name
        suffix = 1
        while name in box.tools:  # as Oxy: a repeated name gets _1, _2...
            name = f"{tool.spec.name}_{suffix}"
            suffix += 1
        if name != tool.spec.name:
            tool.spec = type(tool.spec)(name, tool.spec.description, tool.spec.parameters)
        box.tools[name] = tool
        box.documents[name] = _document(path, tool)
    return box


def _document(path: str, tool: AgentTool) -> str:
    """What a route is found by: an SQL file's ``embed:`` (else its text), another
    route's description (else its path, as words)."""
    if isinstance(tool, SqlRoute):
        return sql_file_embed(tool.sql) or tool.sql
    return tool.spec.description or re.sub(r"[/_.-]+", " ", function_name(path))


DEFAULT_TOP_K = 4  # Oxy's default top_k
_vectors: OrderedDict[tuple[Any, ...], list[float]] = OrderedDict()
_vectors_lock = threading.Lock()
_KEPT_VECTORS = 10_000


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


async def _route_vectors(
    source: RevisionSource, embedder: Embedder, documents: dict[str, str]
) -> dict[str, list[float]]:
    """The routes' vectors, embedded once per (revision, embedder, text) in this
    process: a question costs one embedding, not one per route."""
    prefix = (source.workspace.id, source.revision_id, *embedder.identity)
    keys = {
        name: (*prefix, hashlib.sha256(text.encode()).hexdigest())
        for name, text in documents.items()
    }
    found: dict[str, list[float]] = {}
    with _vectors_lock:
        for name, key in keys.items():
            vector = _vectors.get(key)
            if vector is not None:
                _vectors.move_to_end(key)
                found[name] = vector
    missing = [name for name in documents if name not in found]
    if missing:
        vectors = await embedder.embed([documents[name] for name in missing])
        with _vectors_lock:
            for name, vector in zip(missing, vectors, strict=True):
                found[name] = _vectors[keys[name]] = vector
            while len(_vectors) > _KEPT_VECTORS:
                _vectors.popitem(last=False)
    return found


ROUTES_KEY = "routes"
"""The turn journal's key of the routes a turn offered (``<step>.agent.routes``)."""


async def narrow_routes(
    source: RevisionSource,
    agent: RoutingAgentConfig,
    box: Toolbox,
    question: str,
    secrets: SecretResolver,
    journal: TurnJournal | None = None,
) -> list[str]:
    """Keep the ``top_k`` routes (default 4, as Oxy) most similar to the question, most
    similar first, as Oxy's route retrieval does; the names kept. With no more routes
    than that, every route is kept and nothing is embedded (the same set).

    The routes kept (or why none could be narrowed) are journaled like a model
    response: a turn resumed on another worker offers the same routes, embedding
    nothing, so the model calls it replays name tools that are still there."""
    top_k = max(1, agent.top_k if agent.top_k is not None else DEFAULT_TOP_K)
    if len(box.tools) <= top_k:
        return list(box.tools)
    entry = None if journal is None else await asyncio.to_thread(journal.get, ROUTES_KEY)
    if entry is not None:
        box.tools = {name: box.tools[name] for name in entry["routes"] if name in box.tools}
        if entry.get("error"):
            raise EmbeddingFailed(str(entry["error"]))
        return list(box.tools)
    try:
        kept = await _most_similar(source, agent, box, question, secrets, top_k)
    except (EmbeddingFailed, ModelNotConfigured) as exc:
        if journal is not None:
            failed = {"routes": list(box.tools), "error": secrets.redact(exc.message)}
            await asyncio.to_thread(journal.put, ROUTES_KEY, failed)
        raise
    if journal is not None:
        await asyncio.to_thread(journal.put, ROUTES_KEY, {"routes": kept})
    box.tools = {name: box.tools[name] for name in kept}
    return kept


async def _most_similar(
    source: RevisionSource,
    agent: RoutingAgentConfig,
    box: Toolbox,
    question: str,
    secrets: SecretResolver,
    top_k: int,
) -> list[str]:
    embedder = make_embedder(
        source.config, agent.embed_model, agent.model, secrets, dimensions=agent.n_dims
    )
    try:
        vectors = await _route_vectors(source, embedder, box.documents)
        (wanted,) = await embedder.embed([question])
    finally:
        await embedder.close()
    ranked = sorted(box.tools, key=lambda name: _cosine(wanted, vectors[name]), reverse=True)
    return ranked[:top_k]


def fallback_tool(
    source: RevisionSource,
    agent: RoutingAgentConfig,
    connections: Connections,
    limits: SqlLimits | None = None,
    guard: StatementGuard | None = None,
) -> AgentTool | None:
    if agent.route_fallback is None:
        return None
    path = normalise_path(agent.route_fallback)
    try:
        return _route_tool(source, path, connections, limits or SqlLimits(), guard)
    except RouteNotOffered as exc:
        raise NotFound(
            f"route_fallback {agent.route_fallback!r} cannot be offered: {exc}",
            route=agent.route_fallback,
        ) from None
    except NotFound:
        raise NotFound(
            f"route_fallback {agent.route_fallback!r} is not in the revision",
            route=agent.route_fallback,
        ) from None
