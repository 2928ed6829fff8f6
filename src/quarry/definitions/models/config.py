"""``config.yml``: the workspace's databases, LLM models and defaults.

Connection secrets are only ever named here (``*_var`` keys point at secrets held
elsewhere); the models never resolve them, which keeps this package free of I/O.
"""

from __future__ import annotations

import posixpath
from typing import Annotated, Any, Literal, Self

from pydantic import Discriminator, Field, Tag, model_validator

from quarry.definitions.models.common import JsonObject, NonNegativeInt, Strict


class _Database(Strict):
    name: str


class BigQueryDatabase(_Database):
    type: Literal["bigquery"]
    dataset: str | None = None
    datasets: dict[str, list[str]] = {}
    dry_run_limit: NonNegativeInt | None = None
    key_path: str | None = None
    key_path_var: str | None = None


class DuckDbDatabase(_Database):
    """A folder of data files (``dataset``), a database file (``path``), or DuckLake."""

    type: Literal["duckdb"]
    dataset: str | None = None
    path: str | None = None
    # DuckLake: catalog and data in object storage.
    data_path: str | None = None
    schema_name: str | None = None
    catalog_path: str | None = None
    s3_secret_type: Literal["config", "credential_chain"] | None = None
    key_id: str | None = None
    secret: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    url_style: str | None = None
    use_ssl: bool | None = None
    chain: str | None = None

    @model_validator(mode="after")
    def _one_storage(self) -> Self:
        given = [k for k in ("dataset", "path", "data_path") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a duckdb database needs exactly one of 'dataset' (a folder), "
                "'path' (a database file) or 'data_path' (DuckLake)"
            )
        if self.data_path is not None:
            missing = [k for k in ("schema_name", "s3_secret_type") if getattr(self, k) is None]
            # "config" names a credential mode, it is not a secret.
            if self.s3_secret_type == "config" and self.key_id is None:  # noqa: S105
                missing.append("key_id")
            if missing:
                raise ValueError("a DuckLake database also needs " + ", ".join(missing))
        return self


class SnowflakeDatabase(_Database):
    type: Literal["snowflake"]
    account: str
    username: str
    warehouse: str
    database: str
    role: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    password: str | None = None
    password_var: str | None = None
    private_key_path: str | None = None
    browser_timeout_secs: NonNegativeInt | None = None
    cache_dir: str | None = None
    datasets: dict[str, list[str]] = {}
    filters: dict[str, JsonObject] = {}


class _ServerDatabase(_Database):
    """Host/port/user style connections; each value may come from a variable."""

    host: str | None = None
    host_var: str | None = None
    port: str | None = None
    port_var: str | None = None
    user: str | None = None
    user_var: str | None = None
    password_var: str | None = None
    database: str | None = None
    database_var: str | None = None


class PostgresDatabase(_ServerDatabase):
    type: Literal["postgres"]


class RedshiftDatabase(_ServerDatabase):
    type: Literal["redshift"]


class MysqlDatabase(_ServerDatabase):
    type: Literal["mysql"]


class AirhouseDatabase(_ServerDatabase):
    type: Literal["airhouse"]


class AirhouseManagedDatabase(_Database):
    type: Literal["airhouse_managed"]


class ClickHouseDatabase(_ServerDatabase):
    type: Literal["clickhouse"]
    role: str | None = None
    schemas: dict[str, list[str]] = {}
    filters: dict[str, JsonObject] = {}
    settings_prefix: str | None = None


class DomoDatabase(_Database):
    type: Literal["domo"]
    instance: str
    dataset_id: str
    developer_token_var: str


class MotherDuckDatabase(_Database):
    type: Literal["motherduck"]
    token_var: str
    database: str | None = None
    schemas: dict[str, list[str]] = {}


Database = Annotated[
    BigQueryDatabase
    | DuckDbDatabase
    | SnowflakeDatabase
    | PostgresDatabase
    | RedshiftDatabase
    | MysqlDatabase
    | AirhouseDatabase
    | AirhouseManagedDatabase
    | ClickHouseDatabase
    | DomoDatabase
    | MotherDuckDatabase,
    Field(discriminator="type"),
]


class EnvHeader(Strict):
    env_var: str


def _text_or_mapping(value: Any) -> str | None:
    if isinstance(value, str):
        return "text"
    if isinstance(value, (dict, Strict)):
        return "mapping"
    return None


HeaderValue = Annotated[
    Annotated[str, Tag("text")] | Annotated[EnvHeader, Tag("mapping")],
    Discriminator(
        _text_or_mapping,
        custom_error_type="header_form",
        custom_error_message="expected a header value or {env_var: <variable name>}",
    ),
]


class _Model(Strict):
    name: str
    model_ref: str


class OpenAIModel(_Model):
    vendor: Literal["openai"]
    key_var: str
    api_url: str | None = None
    azure_api_version: str | None = None
    azure_deployment_id: str | None = None
    headers: dict[str, HeaderValue] | None = None


class GoogleModel(_Model):
    vendor: Literal["google"]
    key_var: str


class OllamaModel(_Model):
    vendor: Literal["ollama"]
    api_key: str
    api_url: str


class AnthropicModel(_Model):
    vendor: Literal["anthropic"]
    key_var: str
    api_url: str | None = None
    headers: dict[str, HeaderValue] | None = None


Model = Annotated[
    OpenAIModel | GoogleModel | OllamaModel | AnthropicModel, Field(discriminator="vendor")
]


class OmniTopic(Strict):
    name: str
    model_id: str


class OmniIntegration(Strict):
    type: Literal["omni"]
    name: str
    base_url: str
    api_key_var: str
    topics: list[OmniTopic]
    arrow_threshold_rows: NonNegativeInt = 1000


class LookerExplore(Strict):
    name: str
    model: str
    description: str | None = None


class LookerIntegration(Strict):
    type: Literal["looker"]
    name: str
    base_url: str
    client_id_var: str
    client_secret_var: str
    explores: list[LookerExplore]


Integration = Annotated[OmniIntegration | LookerIntegration, Field(discriminator="type")]


class Defaults(Strict):
    database: str | None = None
    agent: str | None = None


class A2aAgent(Strict):
    name: str
    ref: str


class A2aConfig(Strict):
    agents: list[A2aAgent] = []


class McpConfig(Strict):
    tools: list[str] = []


class Repository(Strict):
    name: str
    path: str | None = None
    git_url: str | None = None
    branch: str | None = None
    git_namespace_id: str | None = None


class BuilderAgentModel(Strict):
    model: str


# Either a path to an agent file, or just the model the built-in builder should use.
BuilderAgent = Annotated[
    Annotated[str, Tag("text")] | Annotated[BuilderAgentModel, Tag("mapping")],
    Discriminator(
        _text_or_mapping,
        custom_error_type="builder_agent_form",
        custom_error_message="expected a path to an agent file or {model: <model name>}",
    ),
]


class WorkspaceConfig(Strict):
    databases: list[Database]
    models: list[Model]
    defaults: Defaults | None = None
    integrations: list[Integration] = []
    builder_agent: BuilderAgent | None = None
    a2a: A2aConfig | None = None
    mcp: McpConfig | None = None
    repositories: list[Repository] | None = None
    base_branch: str | None = None
    protected_branches: list[str] | None = None


def config_names(config: WorkspaceConfig) -> tuple[set[str], set[str]]:
    """The database names and model names a workspace defines."""
    return {db.name for db in config.databases}, {model.name for model in config.models}


def dataset_dirs(config: WorkspaceConfig) -> list[str]:
    """Workspace-relative folders that DuckDB databases read their data files from.

    These folders hold data, not definitions, so the compiler must ship them with a
    revision rather than parse them. Folders outside the workspace (absolute, or
    climbing out with ``..``) cannot be shipped and are left out.
    """
    dirs: set[str] = set()
    for db in config.databases:
        if isinstance(db, DuckDbDatabase) and db.dataset is not None:
            folder = posixpath.normpath(db.dataset.strip())
            if not folder.startswith("/") and folder != ".." and not folder.startswith("../"):
                dirs.add(folder)
    return sorted(dirs)
