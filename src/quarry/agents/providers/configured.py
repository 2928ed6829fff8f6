"""A ``config.yml`` ``models:`` entry made into a provider, keys resolved as connectors'.

A ``key_var`` (and a header's ``env_var``) names a variable of the worker; it resolves
only where :class:`~quarry.runtime.connectors.secrets.SecretResolver` allows it for
the tenant (``QUARRY_*``/``AWS_*`` never; fleet mode only names the operator listed).
Errors name the model and the field, never a value.
"""

from __future__ import annotations

from quarry.agents.providers.base import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    ModelNotConfigured,
    ModelProvider,
)
from quarry.definitions.models.config import (
    AnthropicModel,
    EnvHeader,
    GoogleModel,
    HeaderValue,
    Model,
    OllamaModel,
    OpenAIModel,
    WorkspaceConfig,
)
from quarry.runtime.connectors.base import ConnectorError
from quarry.runtime.connectors.secrets import SecretResolver


def find_model(config: WorkspaceConfig, name: str) -> Model:
    found = next((model for model in config.models if model.name == name), None)
    if found is None:
        known = ", ".join(sorted(model.name for model in config.models))
        raise ModelNotConfigured(
            f"no model named {name!r} in config.yml models: (known: {known or 'none'})",
            model=name,
        )
    return found


def resolve_secret(secrets: SecretResolver, model: str, field: str, variable: str) -> str:
    """The value of ``variable`` for ``model``'s ``field``, if this tenant may read it."""
    if not secrets.allowed(variable):
        raise ModelNotConfigured(
            f"model {model!r}: {field} names {variable!r}, which this tenant may not read "
            "(an operator allows names with QUARRY_SECRET_ENV_ALLOW; QUARRY_* and AWS_* "
            "never resolve)",
            model=model,
            field=field,
        )
    try:
        # Through the resolver: the value is then redacted from any message it makes.
        return secrets.resolve(model, field, variable)
    except ConnectorError:
        raise ModelNotConfigured(
            f"model {model!r}: {field} names {variable!r}, which is not set",
            model=model,
            field=field,
        ) from None


def _headers(
    secrets: SecretResolver, model: str, headers: dict[str, HeaderValue] | None
) -> dict[str, str] | None:
    if not headers:
        return None
    return {
        name: resolve_secret(secrets, model, f"headers.{name}.env_var", value.env_var)
        if isinstance(value, EnvHeader)
        else value
        for name, value in headers.items()
    }


def make_provider(
    config: WorkspaceConfig,
    name: str,
    secrets: SecretResolver,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_retries: int = DEFAULT_RETRIES,
    reasoning_effort: str | None = None,
) -> ModelProvider:
    """The provider for model ``name`` of ``config``."""
    model = find_model(config, name)
    # Each SDK is imported when a model of its vendor is used (they are slow to import:
    # the anthropic SDK was ~9% of a worker's first 200 OpenAI turns, imported for none).
    options = {
        "timeout": timeout,
        "max_retries": max_retries,
        "reasoning_effort": reasoning_effort,
    }
    if isinstance(model, OpenAIModel):
        from quarry.agents.providers.openai import OpenAIProvider

        key = resolve_secret(secrets, name, "key_var", model.key_var)
        return OpenAIProvider(
            name,
            model.model_ref,
            key,
            api_url=model.api_url,
            headers=_headers(secrets, name, model.headers),
            azure_deployment=model.azure_deployment_id,
            azure_api_version=model.azure_api_version,
            **options,  # type: ignore[arg-type]
        )
    if isinstance(model, OllamaModel):
        # Ollama (and any local server) speaks the OpenAI protocol at api_url.
        from quarry.agents.providers.openai import OpenAIProvider

        return OpenAIProvider(
            name,
            model.model_ref,
            model.api_key,
            api_url=model.api_url,
            **options,  # type: ignore[arg-type]
        )
    if isinstance(model, AnthropicModel):
        from quarry.agents.providers.anthropic import AnthropicProvider

        key = resolve_secret(secrets, name, "key_var", model.key_var)
        return AnthropicProvider(
            name,
            model.model_ref,
            key,
            api_url=model.api_url,
            headers=_headers(secrets, name, model.headers),
            **options,  # type: ignore[arg-type]
        )
    assert isinstance(model, GoogleModel)
    from quarry.agents.providers.google import GoogleProvider

    key = resolve_secret(secrets, name, "key_var", model.key_var)
    return GoogleProvider(
        name,
        model.model_ref,
        key,
        api_url=model.api_url,
        **options,  # type: ignore[arg-type]
    )
