"""Building blocks shared by several definition kinds."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field


class Strict(BaseModel):
    """Base of every definition model.

    ``extra="forbid"`` turns a misspelt key into an error instead of a silently
    ignored setting. Numbers are accepted where text is expected because Oxy reads
    ``port: 5432`` or ``name: 2024`` as text too.
    """

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


def _scalar(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        raise ValueError("expected a single value (text, number, boolean or null)")
    return value


# A YAML scalar of any type; one clear error instead of one per union member.
Scalar = Annotated[Any, AfterValidator(_scalar)]

# Free-form JSON objects: where Oxy's own schema is open we stay open too.
JsonObject = dict[str, Any]

# ``variables:`` of workflows and agents map a name to a JSON Schema for it.
VariableSchemas = dict[str, JsonObject]

NonNegativeInt = Annotated[int, Field(ge=0)]


class RetrievalConfig(Strict):
    """Which prompts route to a definition (used by routing agents, not run yet)."""

    include: list[str] = []
    exclude: list[str] = []


class TaskExport(Strict):
    format: Literal["sql", "csv", "json", "txt", "docx", "parquet"]
    path: str


class TaskCache(Strict):
    path: str
    enabled: bool = False


UNSUPPORTED_TYPE = "unsupported_type"


def by_type(label: str, tags: tuple[str, ...], *, absent: str | None = None) -> Discriminator:
    """Pick a union member by its ``type`` before validating any other field.

    Deciding on ``type`` first means an unsupported task or display kind is reported
    once, by name, rather than as a wall of errors against every member. The error
    context carries what the message needs, so the error mapper stays generic.
    ``absent`` is the member to use when there is no ``type`` at all.
    """

    def tag(value: Any) -> str | None:
        if isinstance(value, dict):
            raw = value.get("type", absent)
        else:
            raw = getattr(value, "type", None) or absent
        return raw if isinstance(raw, str) else None

    return Discriminator(
        tag,
        custom_error_type=UNSUPPORTED_TYPE,
        custom_error_message=f"{label} is not supported yet",
        custom_error_context={"label": label, "supported": ", ".join(sorted(tags))},
    )
