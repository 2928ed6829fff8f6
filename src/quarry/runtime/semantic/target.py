"""Where a semantic query runs: the datasource its views name, and that database's
SQL dialect (from ``config.yml``'s database ``type``).

As in Oxy, the first view of the topic (or, without a topic, of the members asked
for) that names a ``datasource`` decides; a workspace whose views name none falls
back to ``defaults.database`` and then to its only database.
"""

from __future__ import annotations

from dataclasses import dataclass

from quarry.definitions.models.config import WorkspaceConfig
from quarry.semantic import SemanticError, SemanticModel, SemanticQuery

# config.yml ``type`` -> the sqlglot dialect the compiler writes.
DIALECTS: dict[str, str] = {
    "duckdb": "duckdb",
    "motherduck": "duckdb",
    "postgres": "postgres",
    "airhouse": "postgres",
    "redshift": "redshift",
    "mysql": "mysql",
    "bigquery": "bigquery",
    "snowflake": "snowflake",
    "clickhouse": "clickhouse",
}


@dataclass(frozen=True)
class QueryTarget:
    datasource: str
    dialect: str


def _views_of(model: SemanticModel, query: SemanticQuery) -> list[str]:
    if query.topic is not None:
        topic = model.topic(query.topic)
        first = [topic.base_view] if topic.base_view else []
        return [*first, *topic.views]
    names = [*query.measures, *query.dimensions, *(t.dimension for t in query.time_dimensions)]
    return [name.split(".", 1)[0] for name in names if "." in name]


def query_target(
    model: SemanticModel, query: SemanticQuery, config: WorkspaceConfig
) -> QueryTarget:
    """The database a query runs on; a :class:`SemanticError` when there is none."""
    datasource = next(
        (
            model.views[v].datasource
            for v in _views_of(model, query)
            if v in model.views and model.views[v].datasource
        ),
        None,
    )
    if datasource is None and config.defaults is not None:
        datasource = config.defaults.database
    if datasource is None and len(config.databases) == 1:
        datasource = config.databases[0].name
    if datasource is None:
        raise SemanticError(
            "no datasource for this query: name one on the topic's views "
            "(datasource: <config.yml database>) or set defaults.database",
            topic=query.topic,
        )
    database = next((db for db in config.databases if db.name == datasource), None)
    if database is None:
        raise SemanticError(
            f"datasource '{datasource}' is not a database in config.yml", datasource=datasource
        )
    dialect = DIALECTS.get(database.type)
    if dialect is None:
        raise SemanticError(
            f"datasource '{datasource}' is of type '{database.type}', which the semantic "
            "layer does not compile for",
            datasource=datasource,
        )
    return QueryTarget(datasource, dialect)
