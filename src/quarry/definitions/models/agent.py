"""``*.agent.yml``: a default (tool-using) agent or a routing agent.

Oxy tells them apart by ``type: routing`` on the agent itself; everything else is
a default agent. Oxy reads agents, tools and contexts without
``deny_unknown_fields``, so unknown keys (a routing-only key on a default agent
included) are accepted with a warning.
Tool types are all accepted: they describe what an agent may do, and refusing a
workspace for a tool it might never call would be worse than not offering it.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, Tag, model_validator

from quarry.definitions.models.common import (
    JsonObject,
    Lenient,
    NonNegativeInt,
    RetrievalConfig,
    VariableSchemas,
    by_type,
)
from quarry.definitions.models.evals import EvalConfig

AGENT_TYPES = ("default", "routing")


class FileContext(Lenient):
    """Files (``src`` entries may be glob patterns) whose text is given to the agent."""

    type: Literal["file"]
    name: str
    src: list[str]


class SemanticModelContext(Lenient):
    type: Literal["semantic_model"]
    name: str
    src: str


AgentContext = Annotated[FileContext | SemanticModelContext, Field(discriminator="type")]


class ReasoningConfig(Lenient):
    effort: Literal["low", "medium", "high"]


class ToolVariables(Lenient):
    variables: VariableSchemas


class _Tool(Lenient):
    # Oxy defaults both to the tool type and a stock sentence; None means "default".
    name: str | None = None
    description: str | None = None


class ExecuteSqlTool(_Tool):
    type: Literal["execute_sql"]
    database: str
    dry_run_limit: NonNegativeInt | None = None
    variables: JsonObject | None = None


class ValidateSqlTool(_Tool):
    type: Literal["validate_sql"]
    database: str


class RetrievalTool(_Tool):
    type: Literal["retrieval"]
    src: list[str]
    api_key: str | None = None
    api_url: str | None = None
    key_var: str | None = None
    embed_model: str | None = None
    n_dims: NonNegativeInt | None = None
    top_k: NonNegativeInt | None = None
    factor: NonNegativeInt | None = None
    db_path: str | None = None


class VisualizeTool(_Tool):
    type: Literal["visualize"]


class WorkflowTool(_Tool):
    type: Literal["workflow"]
    description: str
    workflow_ref: str
    output_task_ref: str | None = None
    variables: ToolVariables | None = None


class AgentTool(_Tool):
    type: Literal["agent"]
    description: str
    agent_ref: str
    variables: ToolVariables | None = None


class CreateDataAppTool(_Tool):
    type: Literal["create_data_app"]


class EditDataAppTool(_Tool):
    type: Literal["edit_data_app"]


class ReadDataAppTool(_Tool):
    type: Literal["read_data_app"]


class CreateV0AppTool(_Tool):
    type: Literal["create_v0_app"]
    github_repo: str | None = None
    oxy_api_key_var: str | None = None
    v0_api_key_var: str | None = None
    system_instruction: str | None = None


class OmniQueryTool(_Tool):
    type: Literal["omni_query"]
    integration: str
    topic: str


class SemanticQueryTool(_Tool):
    type: Literal["semantic_query"]
    topic: str | None = None
    dry_run_limit: NonNegativeInt | None = None
    variables: JsonObject | None = None


class LookerQueryTool(_Tool):
    type: Literal["looker_query"]
    integration: str
    model: str
    explore: str


class SaveAutomationTool(_Tool):
    type: Literal["save_automation"]
    retrieval: RetrievalConfig | None = None


class DbtRunTool(_Tool):
    type: Literal["dbt_run"]
    selector: str | None = None
    full_refresh: bool = False


class DbtCompileTool(_Tool):
    type: Literal["dbt_compile"]
    model: str | None = None


Tool = Annotated[
    ExecuteSqlTool
    | ValidateSqlTool
    | RetrievalTool
    | VisualizeTool
    | WorkflowTool
    | AgentTool
    | CreateDataAppTool
    | EditDataAppTool
    | ReadDataAppTool
    | CreateV0AppTool
    | OmniQueryTool
    | SemanticQueryTool
    | LookerQueryTool
    | SaveAutomationTool
    | DbtRunTool
    | DbtCompileTool,
    Field(discriminator="type"),
]


class _AgentBase(Lenient):
    # Accepted as in Oxy; the agent is known by its path either way.
    name: str | None = None
    model: str
    description: str = ""
    public: bool = True
    max_iterations: NonNegativeInt = 15
    context: list[AgentContext] | None = None
    reasoning: ReasoningConfig | None = None
    variables: VariableSchemas | None = None
    # Accepted so workspaces compile unchanged; not executed yet.
    tests: list[EvalConfig] = []
    retrieval: RetrievalConfig | None = None


# Tool types Quarry runs (quarry.agents.tools.toolbox builds them); an agent's other
# tools are accepted as in Oxy, offered to no model, and warned about when compiled.
RUNNABLE_TOOL_TYPES = frozenset(
    {
        "execute_sql",
        "validate_sql",
        "semantic_query",
        "visualize",
        "workflow",
        "agent",
        "retrieval",
    }
)


class DefaultAgentConfig(_AgentBase):
    # Oxy reads any ``type`` but "routing" as a default agent.
    type: str | None = None
    system_instructions: str
    tools: list[Tool] = []
    max_tool_calls: NonNegativeInt = 10
    max_tool_concurrency: NonNegativeInt = 10

    @model_validator(mode="after")
    def _other_type(self) -> Self:
        if self.type not in (None, "default"):
            self.note(
                ("type",),
                f"agent type '{self.type}' is read as a default agent, as Oxy reads it "
                "(the agent types are: default, routing)",
            )
        for index, tool in enumerate(self.tools):
            if tool.type not in RUNNABLE_TOOL_TYPES:
                self.note(
                    ("tools", index, "type"),
                    f"tool '{tool.name or tool.type}' ({tool.type}) is not run by Quarry yet: "
                    "it is offered to no model",
                )
        return self


class RoutingAgentConfig(_AgentBase):
    type: Literal["routing"]
    routes: list[str]
    route_fallback: str | None = None
    synthesize_results: bool = True
    system_instructions: str | None = None
    embed_model: str | None = None
    n_dims: NonNegativeInt | None = None
    top_k: NonNegativeInt | None = None
    factor: NonNegativeInt | None = None
    db_path: str | None = None


AgentConfig = Annotated[
    Annotated[DefaultAgentConfig, Tag("default")] | Annotated[RoutingAgentConfig, Tag("routing")],
    by_type("agent type", AGENT_TYPES, absent="default", other="default"),
]
