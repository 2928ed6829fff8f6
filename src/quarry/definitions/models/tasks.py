"""Tasks: the steps of workflows and apps (both use exactly the same task schema).

Only the task types Quarry can run are members of :data:`Task`; the others Oxy
knows (``omni_query``, ``looker_query``, ``visualize``) are rejected by name as
"not supported yet" instead of compiling into something that fails at run time.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import Field, PlainValidator, Tag, model_validator

from quarry.definitions.models.common import (
    JsonObject,
    NonNegativeInt,
    Scalar,
    Strict,
    TaskCache,
    TaskExport,
    by_type,
)

TASK_TYPES = (
    "agent",
    "conditional",
    "execute_sql",
    "formatter",
    "loop_sequential",
    "semantic_query",
    "workflow",
)


class _TaskBase(Strict):
    name: str
    cache: TaskCache | None = None
    mode: Literal["client", "server"] = "client"


class ExecuteSqlTask(_TaskBase):
    type: Literal["execute_sql"]
    database: str
    sql_file: str | None = None
    sql_query: str | None = None
    dry_run_limit: NonNegativeInt | None = None
    export: TaskExport | None = None
    variables: JsonObject | None = None

    @model_validator(mode="after")
    def _one_sql_source(self) -> Self:
        # Oxy silently prefers sql_file when both are given; an author who wrote
        # both almost certainly expects the other one to run.
        if (self.sql_file is None) == (self.sql_query is None):
            raise ValueError("an execute_sql task needs exactly one of 'sql_file' or 'sql_query'")
        return self


class FormatterTask(_TaskBase):
    type: Literal["formatter"]
    template: str
    export: TaskExport | None = None


class WorkflowTask(_TaskBase):
    type: Literal["workflow"]
    src: str
    variables: JsonObject | None = None
    export: TaskExport | None = None


class AgentTask(_TaskBase):
    type: Literal["agent"]
    agent_ref: str
    prompt: str
    retry: NonNegativeInt = 1
    consistency_run: NonNegativeInt = 1
    consistency_prompt: str | None = None
    variables: JsonObject | None = None
    export: TaskExport | None = None


class _ValueFilter(Strict):
    field: str
    op: Literal["eq", "neq", "gt", "gte", "lt", "lte"]
    # Null is a legal value to compare with; a default keeps the stored body (which
    # drops nulls) loadable again.
    value: Scalar = None


class _ListFilter(Strict):
    field: str
    op: Literal["in", "not_in"]
    values: list[Any]


class _DateRangeFilter(Strict):
    field: str
    op: Literal["in_date_range", "not_in_date_range"]
    from_: Scalar = Field(default=None, alias="from")
    to: Scalar = None


SemanticFilter = Annotated[_ValueFilter | _ListFilter | _DateRangeFilter, Field(discriminator="op")]


class SemanticOrder(Strict):
    field: str
    direction: str


class TimeDimension(Strict):
    dimension: str
    granularity: (
        Literal["year", "quarter", "month", "week", "day", "hour", "minute", "second"] | None
    ) = None


class SemanticQueryTask(_TaskBase):
    type: Literal["semantic_query"]
    topic: str | None = None
    dimensions: list[str] = []
    measures: list[str] = []
    time_dimensions: list[TimeDimension] = []
    filters: list[SemanticFilter] = []
    orders: list[SemanticOrder] = []
    limit: NonNegativeInt | None = None
    offset: NonNegativeInt | None = None
    variables: JsonObject | None = None
    export: TaskExport | None = None


def _loop_values(value: Any) -> Any:
    if isinstance(value, (str, list)):
        return value
    raise ValueError("expected a list of values or a template string that renders to one")


class LoopSequentialTask(_TaskBase):
    type: Literal["loop_sequential"]
    values: Annotated[str | list[Any], PlainValidator(_loop_values)]
    tasks: list[Task]
    concurrency: NonNegativeInt = 1


class Condition(Strict):
    if_: str = Field(alias="if")
    tasks: list[Task]


class ConditionalTask(_TaskBase):
    type: Literal["conditional"]
    conditions: list[Condition]
    else_: list[Task] | None = Field(default=None, alias="else")


Task = Annotated[
    Annotated[AgentTask, Tag("agent")]
    | Annotated[ConditionalTask, Tag("conditional")]
    | Annotated[ExecuteSqlTask, Tag("execute_sql")]
    | Annotated[FormatterTask, Tag("formatter")]
    | Annotated[LoopSequentialTask, Tag("loop_sequential")]
    | Annotated[SemanticQueryTask, Tag("semantic_query")]
    | Annotated[WorkflowTask, Tag("workflow")],
    by_type("task type", TASK_TYPES),
]

for _model in (LoopSequentialTask, Condition, ConditionalTask):
    _model.model_rebuild()
