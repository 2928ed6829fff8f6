"""``config.yml``: the workspace's databases, LLM models and defaults.

Connection secrets are only ever named here (``*_var`` keys point at secrets held
elsewhere); the models never resolve them, which keeps this package free of I/O.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import AliasChoices, Discriminator, Field, Tag, model_validator

from quarry.definitions.database_support import unsupported_reason
from quarry.definitions.models.common import JsonObject, Lenient, NonNegativeInt, Strict

# A secret store: the value of a named variable, or None when it is not set.
SecretLookup = Callable[[str], "str | None"]


class MissingSecret(LookupError):
    """A ``*_var`` key names a variable that is not set."""


class _Database(Lenient):
    name: str

    @model_validator(mode="after")
    def _usable(self) -> Self:
        """A warning on ``type`` when Quarry cannot open this database (#21): the
        workflows on other databases still compile; a step on this one fails."""
        reason = unsupported_reason(self)
        if reason is not None:
            kind = getattr(self, "type", "?")
            self.note(("type",), f"database '{self.name}' (type: {kind}) cannot be used: {reason}")
        return self


class BigQueryDatabase(_Database):
    type: Literal["bigquery"]
    dataset: str | None = None
    datasets: dict[str, list[str]] = {}
    dry_run_limit: NonNegativeInt | None = None
    key_path: str | None = None
    key_path_var: str | None = None


class DuckDbDatabase(_Database):
    """A folder of data files (``dataset``), a database file (``path``), or DuckLake.

    Oxy tries the three forms in that order and takes the first that fits, so a
    ``dataset`` wins over a ``path`` given next to it (reported as a warning).
    """

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
        if not given:
            raise ValueError(
                "a duckdb database needs one of 'dataset' (a folder), "
                "'path' (a database file) or 'data_path' (DuckLake)"
            )
        for ignored in given[1:]:
            self.note(
                (ignored,), f"'{ignored}' is ignored: Oxy uses '{given[0]}' when both are given"
            )
            setattr(self, ignored, None)
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


class _Resolved:
    """Oxy's way to read a connection setting (see :meth:`setting`)."""

    _DEFAULTS: ClassVar[dict[str, str]] = {}

    def setting(self, key: str, secrets: SecretLookup) -> str | None:
        """``key`` as Oxy resolves it: ``key`` beats ``key_var`` beats the default.

        Raises :class:`MissingSecret` when only ``key_var`` is given and it is unset.
        """
        value = getattr(self, key, None)
        if value is not None:
            return str(value)
        var = getattr(self, f"{key}_var", None)
        if var is not None:
            found = secrets(var)
            if found is None:
                name = getattr(self, "name", "?")
                raise MissingSecret(f"database {name!r}: {key}_var names {var!r}, which is not set")
            return found
        return self._DEFAULTS.get(key)


class _ServerDatabase(_Resolved, _Database):
    """Host/port/user style connections; each value may come from a variable, and
    Oxy has a default for each (by database type) but the password."""

    host: str | None = None
    host_var: str | None = None
    port: str | None = None
    port_var: str | None = None
    user: str | None = None
    user_var: str | None = None
    # Accepted as in Oxy (its JSON Schema hides it: secrets belong in a variable).
    password: str | None = None
    password_var: str | None = None
    database: str | None = None
    database_var: str | None = None


class PostgresDatabase(_ServerDatabase):
    _DEFAULTS: ClassVar[dict[str, str]] = {
        "host": "localhost",
        "port": "5432",
        "user": "postgres",
        "database": "postgres",
    }
    type: Literal["postgres"]


class RedshiftDatabase(_ServerDatabase):
    _DEFAULTS: ClassVar[dict[str, str]] = {
        "host": "localhost",
        "port": "5439",
        "user": "awsuser",
        "database": "dev",
    }
    type: Literal["redshift"]


class MysqlDatabase(_ServerDatabase):
    _DEFAULTS: ClassVar[dict[str, str]] = {
        "host": "localhost",
        "port": "3306",
        "user": "root",
        "database": "mysql",
    }
    type: Literal["mysql"]


class AirhouseDatabase(_ServerDatabase):
    """Postgres wire protocol, DuckDB SQL dialect."""

    _DEFAULTS: ClassVar[dict[str, str]] = {
        "host": "localhost",
        "port": "5445",
        "user": "admin",
        "password": "airhouse",
        "database": "airhouse",
    }
    type: Literal["airhouse"]


class AirhouseManagedDatabase(_Database):
    type: Literal["airhouse_managed"]


class ClickHouseDatabase(_Resolved, _Database):
    """As Oxy reads it: no port, and no defaults (host, user and database must be
    given, as a value or a variable)."""

    type: Literal["clickhouse"]
    host: str | None = None
    host_var: str | None = None
    user: str | None = None
    user_var: str | None = None
    password: str | None = None
    password_var: str | None = None
    database: str | None = None
    database_var: str | None = None
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


class EnvHeader(Lenient):
    env_var: str


def _text_or_mapping(value: Any) -> str | None:
    if isinstance(value, str):
        return "text"
    if isinstance(value, (dict, Lenient)):
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


class _LlmModel(Lenient):
    name: str
    model_ref: str


class OpenAIModel(_LlmModel):
    vendor: Literal["openai"]
    key_var: str
    api_url: str | None = None
    azure_api_version: str | None = None
    azure_deployment_id: str | None = None
    headers: dict[str, HeaderValue] | None = None


class GoogleModel(_LlmModel):
    vendor: Literal["google"]
    key_var: str
    api_url: str | None = None  # Quarry's: the Gemini API's base URL (a gateway, a proxy)


class OllamaModel(_LlmModel):
    vendor: Literal["ollama"]
    api_key: str
    api_url: str


class AnthropicModel(_LlmModel):
    vendor: Literal["anthropic"]
    key_var: str
    api_url: str | None = None
    headers: dict[str, HeaderValue] | None = None


Model = Annotated[
    OpenAIModel | GoogleModel | OllamaModel | AnthropicModel, Field(discriminator="vendor")
]


class OmniTopic(Lenient):
    name: str
    model_id: str


class OmniIntegration(Lenient):
    type: Literal["omni"]
    name: str
    base_url: str
    api_key_var: str
    topics: list[OmniTopic]
    arrow_threshold_rows: NonNegativeInt = 1000


class LookerExplore(Lenient):
    name: str
    model: str
    description: str | None = None


class LookerIntegration(Lenient):
    type: Literal["looker"]
    name: str
    base_url: str
    client_id_var: str
    client_secret_var: str
    explores: list[LookerExplore]


Integration = Annotated[OmniIntegration | LookerIntegration, Field(discriminator="type")]


class Defaults(Lenient):
    database: str | None = None
    agent: str | None = None
    # Quarry's own key (Oxy reads defaults without deny_unknown_fields and ignores
    # it): undefined names in templates are errors for this workspace.
    strict_templates: bool = False


class A2aAgent(Lenient):
    name: str
    ref: str


class A2aConfig(Lenient):
    agents: list[A2aAgent] = []


class McpConfig(Lenient):
    tools: list[str] = []


class Repository(Lenient):
    name: str
    path: str | None = None
    git_url: str | None = None
    branch: str | None = None
    git_namespace_id: str | None = None


class BuilderAgentModel(Lenient):
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
    """Oxy reads config.yml with ``deny_unknown_fields``: an unknown key is an error."""

    databases: list[Database]
    # Required by Oxy; Quarry asks for models only where something names one.
    models: list[Model] = []
    defaults: Defaults | None = None
    integrations: list[Integration] = []
    builder_agent: BuilderAgent | None = None
    a2a: A2aConfig | None = None
    mcp: McpConfig | None = None
    # ``data_repos`` is the older spelling Oxy still reads.
    repositories: list[Repository] | None = Field(
        default=None, validation_alias=AliasChoices("repositories", "data_repos")
    )
    base_branch: str | None = None
    protected_branches: list[str] | None = None
    # Deprecated in Oxy, tolerated so old files still load; neither is read.
    slack: Any = Field(default=None, exclude=True)
    admins: list[str] = Field(default=[], exclude=True)

    @model_validator(mode="after")
    def _deprecated(self) -> Self:
        if self.slack is not None:
            self.note(
                ("slack",),
                "'slack' is no longer read (Oxy configures Slack per organisation); it is ignored",
            )
        if self.admins:
            self.note(
                ("admins",),
                "'admins' is no longer read (Oxy takes its owner from OXY_OWNER); it is ignored",
            )
        return self


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
