"""``*.agentic.yml``: Oxy's state-machine analytics agent.

Quarry does not run these yet; they are modelled so that workspaces containing
them compile, and so that their database references are checked like any other.
Oxy's model of this file is not in the reference source, so unknown keys are
treated as in most of Oxy's formats: accepted, with a warning.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Tag

from quarry.definitions.models.common import Lenient, NonNegativeInt


class BudgetThinking(Lenient):
    budget_tokens: NonNegativeInt


class EffortThinking(Lenient):
    effort: str


def _thinking_form(value: Any) -> str | None:
    if isinstance(value, str):
        return "shorthand"
    if isinstance(value, (dict, BudgetThinking)) and "budget_tokens" in _keys(value):
        return "budget"
    if isinstance(value, (dict, EffortThinking)) and "effort" in _keys(value):
        return "effort"
    return None


def _keys(value: Any) -> set[str]:
    return set(value) if isinstance(value, dict) else set(type(value).model_fields)


# Picked by shape up front so a bad value gets one error, not one per form.
Thinking = Annotated[
    Annotated[str, Tag("shorthand")]
    | Annotated[BudgetThinking, Tag("budget")]
    | Annotated[EffortThinking, Tag("effort")],
    Discriminator(
        _thinking_form,
        custom_error_type="thinking_form",
        custom_error_message=(
            "expected 'adaptive', 'disabled', 'effort:<level>', "
            "{budget_tokens: <n>} or {effort: <level>}"
        ),
    ),
]


class ExtendedThinkingConfig(Lenient):
    model: str | None = None
    thinking: Thinking | None = None


class LlmConfig(Lenient):
    ref: str | None = None
    # Oxy defaults to Anthropic unless ``ref`` names a model of another vendor, so
    # an absent vendor must stay absent rather than become "anthropic".
    vendor: Literal["anthropic", "open_ai", "open_ai_compat"] | None = None
    model: str | None = None
    api_key: str | None = None
    base_url: str | None = None
    max_tokens: NonNegativeInt | None = None
    thinking: Thinking | None = None
    extended_thinking: ExtendedThinkingConfig | None = None


class SemanticEngineConfig(Lenient):
    vendor: Literal["cube", "looker"]
    base_url: str
    api_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None


class StateConfig(Lenient):
    instructions: str | None = None
    model: str | None = None
    max_retries: NonNegativeInt | None = None
    thinking: Thinking | None = None


class RuleEntry(BaseModel):
    """A validation rule; its tuning parameters are rule-specific, hence open."""

    model_config = ConfigDict(extra="allow")

    name: str
    enabled: bool = True


class RuleSetConfig(Lenient):
    specified: list[RuleEntry] = []
    solvable: list[RuleEntry] = []
    solved: list[RuleEntry] = []


class ValidationConfig(Lenient):
    rules: RuleSetConfig = RuleSetConfig()


class AgenticConfig(Lenient):
    llm: LlmConfig | None = None
    databases: list[str] = []
    # Glob patterns relative to the folder of the .agentic.yml file.
    context: list[str] = []
    instructions: str | None = None
    thinking: Thinking | None = None
    states: dict[str, StateConfig] | None = None
    semantic_engine: SemanticEngineConfig | None = None
    validation: ValidationConfig | None = None
