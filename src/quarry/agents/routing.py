"""Routing agents (``type: routing``), as Oxy's: each route — an agent, a workflow
or a semantic topic of the revision, named by path or glob — becomes a tool, and the
model picks the one that answers the question.

* tool names are the route's path made a function name (``agents/sales.agent.yml``
  -> ``agents_sales_agent``), descriptions the route's own ``description``;
* ``synthesize_results: true`` (the default): the model reads the route's output and
  answers; ``false``: the first route's output is the answer, as it came;
* ``route_fallback``: a route asked with the question when the model called no route.

Not built: narrowing many routes by embedding similarity (every route is offered)
and ``.sql`` files as routes (Oxy binds them to a database through its retrieval
index); such routes are named as not offered.
"""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any

from quarry.agents.tools.agent import AskAgent
from quarry.agents.tools.base import AgentTool
from quarry.agents.tools.readonly import SqlLimits
from quarry.agents.tools.semantic import SemanticQueryExecutor
from quarry.agents.tools.sql import StatementGuard
from quarry.agents.tools.toolbox import Toolbox
from quarry.agents.tools.workflow import RunWorkflow
from quarry.core.errors import NotFound
from quarry.definitions.kinds import Kind, classify_path, definition_name
from quarry.definitions.models.agent import AgentTool as AgentToolConfig
from quarry.definitions.models.agent import (
    RoutingAgentConfig,
    SemanticQueryTool,
    WorkflowTool,
)
from quarry.runtime.connectors.registry import Connections
from quarry.runtime.source import RevisionSource, normalise_path

DEFAULT_INSTRUCTIONS = (
    "You route questions. Call the one tool whose description fits the question best, "
    "with the question (or what the tool needs to answer it)."
)


def function_name(path: str) -> str:
    """``agents/sales.agent.yml`` -> ``agents_sales_agent`` (a valid function name)."""
    stem = re.sub(r"\.(yml|yaml)$", "", path)
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


def _route_tool(
    source: RevisionSource,
    path: str,
    connections: Connections,
    limits: SqlLimits,
    guard: StatementGuard | None,
) -> AgentTool | None:
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
        except NotFound:
            tool = None
        if tool is None:
            box.not_offered.append(f"{path} (route)")
            continue
        name = tool.spec.name
        suffix = 1
        while name in box.tools:  # as Oxy: a repeated name gets _1, _2...
            name = f"{tool.spec.name}_{suffix}"
            suffix += 1
        if name != tool.spec.name:
            tool.spec = type(tool.spec)(name, tool.spec.description, tool.spec.parameters)
        box.tools[name] = tool
    return box


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
    except NotFound:
        raise NotFound(
            f"route_fallback {agent.route_fallback!r} is not in the revision",
            route=agent.route_fallback,
        ) from None
