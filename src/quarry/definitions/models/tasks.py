"""Tasks: the steps of workflows and apps (both use exactly the same task schema).

Oxy reads tasks without ``deny_unknown_fields`` and reads a task of a type it does
not know as an "unknown" task instead of refusing the file; Quarry does the same,
with a warning (and a did-you-mean) for each. The task types Oxy has but Quarry
does not run (``omni_query``, ``looker_query``, ``visualize``) are read in full,
so their mistakes are still found, and reported with a warning that Quarry does
not run them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import ConfigDict, Field, PlainValidator, Tag, model_validator

from quarry.definitions.models.common import (
    JsonObject,
    Lenient,
    NonNegativeInt,
    Scalar,
    TaskCache,
    TaskExport,
    by_type,
    close_match,
)

TASK_TYPES = (
    "agent",
    "conditional",
    "execute_sql",
    "formatter",
    "loop_sequential",
    "looker_query",
    "omni_query",
    "semantic_query",
    "visualize",
    "workflow",
)
# Types Oxy knows that Quarry reads but does not run.
PARSED_ONLY_TASK_TYPES = ("looker_query", "omni_query", "visualize")
# The member for a ``type`` Oxy does not know either.
UNKNOWN_TASK = "unknown"


class _TaskBase(Lenient):
    name: str
    cache: TaskCache | None = None
    mode: Literal["client", "server"] = "client"
    # Quarry's extension: seconds this step may run before it is interrupted and
    # fails (a composite step counts its children); default: QUARRY_STEP_TIMEOUT_SECONDS.
    timeout: Annotated[float, Field(gt=0)] | None = None


class ExecuteSqlTask(_TaskBase):
    type: Literal["execute_sql"]
    database: str
    sql_file: str | None = None
    sql_query: str | None = None
    dry_run_limit: NonNegativeInt | None = None
    export: TaskExport | None = None
    variables: JsonObject | None = None
    # Quarry's extension: let the SQL hold several statements (one by default, so a
    # value spliced into the SQL cannot stack a second one).
    multiple_statements: bool = False

    @model_validator(mode="after")
    def _one_sql_source(self) -> Self:
        if self.sql_file is None and self.sql_query is None:
            raise ValueError("an execute_sql task needs one of 'sql_file' or 'sql_query'")
        if self.sql_file is not None and self.sql_query is not None:
            # Oxy takes sql_file when both are given; say so rather than run the
            # other one silently.
            self.note(
                ("sql_query",), "'sql_query' is ignored: Oxy runs 'sql_file' when both are given"
            )
            self.sql_query = None
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


class _ValueFilter(Lenient):
    field: str
    op: Literal["eq", "neq", "gt", "gte", "lt", "lte"]
    # Null is a legal value to compare with; a default keeps the stored body (which
    # drops nulls) loadable again.
    value: Scalar = None


class _ListFilter(Lenient):
    field: str
    op: Literal["in", "not_in"]
    values: list[Any]


class _DateRangeFilter(Lenient):
    field: str
    op: Literal["in_date_range", "not_in_date_range"]
    from_: Scalar = Field(default=None, alias="from")
    to: Scalar = None


SemanticFilter = Annotated[_ValueFilter | _ListFilter | _DateRangeFilter, Field(discriminator="op")]


class SemanticOrder(Lenient):
    field: str
    direction: Literal["asc", "desc"] = "asc"


class TimeDimension(Lenient):
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


class Condition(Lenient):
    if_: str = Field(alias="if")
    tasks: list[Task]


class ConditionalTask(_TaskBase):
    type: Literal["conditional"]
    conditions: list[Condition]
    else_: list[Task] | None = Field(default=None, alias="else")


class _ParsedOnlyTask(_TaskBase):
    """A task type Oxy runs and Quarry reads but does not run yet."""

    type: str

    @model_validator(mode="after")
    def _not_run(self) -> Self:
        self.note(
            ("type",), f"Quarry does not run '{self.type}' tasks yet (a run stops at this task)"
        )
        return self


class OmniQueryTask(_ParsedOnlyTask):
    type: Literal["omni_query"]
    integration: str
    topic: str
    # Omni's query parameters: passed to Omni as they are.
    fields: Any = None
    limit: Any = None
    sorts: Any = None
    filters: Any = None
    export: TaskExport | None = None


class LookerSort(Lenient):
    field: str
    direction: str = "asc"


class LookerQueryTask(_ParsedOnlyTask):
    type: Literal["looker_query"]
    integration: str
    model: str
    explore: str
    fields: list[str]
    filters: dict[str, str] | None = None
    filter_expression: str | None = None
    sorts: list[LookerSort] | None = None
    limit: int | None = None
    export: TaskExport | None = None


class VisualizeTask(_ParsedOnlyTask):
    type: Literal["visualize"]
    prompt: str = ""
    export: TaskExport | None = None


class UnknownTask(_TaskBase):
    """A ``type`` Oxy does not know: Oxy keeps such a task and does nothing with it.

    Its other keys mean nothing to anyone, so they are dropped without a warning each.
    """

    model_config = ConfigDict(extra="ignore")

    type: str

    @model_validator(mode="after")
    def _unknown(self) -> Self:
        hint = close_match(self.type, TASK_TYPES)
        self.note(
            ("type",),
            f"unknown task type '{self.type}' (Oxy accepts and skips it; "
            f"Quarry cannot run it){hint}",
        )
        return self


Task = Annotated[
    Annotated[AgentTask, Tag("agent")]
    | Annotated[ConditionalTask, Tag("conditional")]
    | Annotated[ExecuteSqlTask, Tag("execute_sql")]
    | Annotated[FormatterTask, Tag("formatter")]
    | Annotated[LoopSequentialTask, Tag("loop_sequential")]
    | Annotated[SemanticQueryTask, Tag("semantic_query")]
    | Annotated[WorkflowTask, Tag("workflow")]
    | Annotated[OmniQueryTask, Tag("omni_query")]
    | Annotated[LookerQueryTask, Tag("looker_query")]
    | Annotated[VisualizeTask, Tag("visualize")]
    | Annotated[UnknownTask, Tag(UNKNOWN_TASK)],
    by_type("task type", TASK_TYPES, other=UNKNOWN_TASK),
]

for _model in (LoopSequentialTask, Condition, ConditionalTask):
    _model.model_rebuild()
