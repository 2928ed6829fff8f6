"""Building blocks shared by several definition kinds."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
)
from pydantic_core import PydanticCustomError

from quarry.definitions.jsonschemas import schema_problem

# A note a model leaves about its own input: (loc relative to the model, message).
Note = tuple[tuple[str | int, ...], str]


# The notes of the models validated inside :func:`collecting_notes`, by model id,
# each with its model (kept alive so no other model reuses the id meanwhile).
_collected: ContextVar[dict[int, tuple[BaseModel, list[Note]]] | None] = ContextVar(
    "quarry_definition_notes", default=None
)


@contextmanager
def collecting_notes() -> Iterator[dict[int, tuple[BaseModel, list[Note]]]]:
    """Collect the notes models leave while validating inside the block (the parser
    reports them as warnings); outside such a block notes are not kept."""
    notes: dict[int, tuple[BaseModel, list[Note]]] = {}
    token = _collected.set(notes)
    try:
        yield notes
    finally:
        _collected.reset(token)


def notes_of(notes: Mapping[int, tuple[BaseModel, list[Note]]], model: BaseModel) -> list[Note]:
    found = notes.get(id(model))
    return found[1] if found is not None and found[0] is model else []


class _Model(BaseModel):
    """What both bases share: numbers read as text, and notes for the author.

    Numbers are accepted where text is expected because Oxy reads ``port: 5432`` or
    ``name: 2024`` as text too. :meth:`note` records a warning a validator found about
    a value it accepted (e.g. a field Oxy reads but then ignores); the parser reports
    them with the file's other warnings. Notes are collected beside the models, not
    in a private attribute: a pydantic model with one pays about twice per instance
    to validate, for every mapping of every file of every compile.
    """

    def note(self, loc: tuple[str | int, ...], message: str) -> None:
        notes = _collected.get()
        if notes is not None:
            notes.setdefault(id(self), (self, []))[1].append((loc, message))


# Both bases defer building their validators to first use (``defer_build``): the
# ~130 models cost ~0.3-0.8 s to build at import, and a process uses few of them
# (``quarry run`` of a SQL step: ~5; issue #20, tests/unit/cli/test_startup_imports).


class Strict(_Model):
    """A mapping Oxy reads with ``deny_unknown_fields``: an unknown key is an error.

    Also the base of Quarry's own formats (schedules, monitors), where a misspelt
    key must never be silently ignored.
    """

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, defer_build=True)


class Lenient(_Model):
    """A mapping Oxy reads without ``deny_unknown_fields``: Oxy ignores unknown keys.

    Quarry accepts them too, so an Oxy workspace compiles unchanged, but reports each
    one as a warning (``quarry compile --strict`` makes them errors). The unknown keys
    are kept in ``model_extra`` only until the parser has reported them.
    """

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True, defer_build=True)


def _scalar(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        raise ValueError("expected a single value (text, number, boolean or null)")
    return value


# A YAML scalar of any type; one clear error instead of one per union member.
Scalar = Annotated[Any, AfterValidator(_scalar)]

# Free-form JSON objects: where Oxy's own schema is open we stay open too.
JsonObject = dict[str, Any]


def _variable_shorthand(value: Any) -> Any:
    """Oxy's ``name: text`` shorthand means ``{type: string, default: text}``."""
    if isinstance(value, str):
        return {"type": "string", "default": value}
    if not isinstance(value, dict):
        raise PydanticCustomError(
            "variable_form", "expected a JSON Schema (a mapping) or a text default"
        )
    return value


def _valid_schema(value: dict[str, Any]) -> dict[str, Any]:
    problem = schema_problem(value)
    if problem is not None:
        raise PydanticCustomError("variable_schema", "{problem}", {"problem": problem})
    return value


# One variable of ``variables:``: a JSON Schema (valid, with a default that fits it).
VariableSchema = Annotated[
    JsonObject, BeforeValidator(_variable_shorthand), AfterValidator(_valid_schema)
]

# ``variables:`` of workflows and agents map a name to a JSON Schema for it.
VariableSchemas = dict[str, VariableSchema]

NonNegativeInt = Annotated[int, Field(ge=0)]


class RetrievalConfig(Lenient):
    """Which prompts route to a definition (used by routing agents, not run yet)."""

    include: list[str] = []
    exclude: list[str] = []


# Oxy's export formats, plus Quarry's parquet.
ExportFormat = Literal["sql", "csv", "json", "txt", "docx", "parquet"]


class TaskExport(Lenient):
    format: ExportFormat
    path: str


class TaskCache(Lenient):
    path: str
    enabled: bool = False


UNSUPPORTED_TYPE = "unsupported_type"


def close_match(word: str, choices: Iterable[str], *, cutoff: float = 0.6) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices``, or ``""``."""
    found = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=cutoff)
    return f"; did you mean '{found[0]}'?" if found else ""


def by_type(
    label: str,
    tags: tuple[str, ...],
    *,
    absent: str | None = None,
    other: str | None = None,
) -> Discriminator:
    """Pick a union member by its ``type`` before validating any other field.

    Deciding on ``type`` first means an unknown task or display kind is reported
    once, by name (with a did-you-mean), rather than as a wall of errors against
    every member. The error context carries what the message needs, so the error
    mapper stays generic. ``absent`` is the member to use when there is no ``type``
    at all; ``other`` the member for a ``type`` not in ``tags`` (Oxy's
    ``#[serde(other)]``), where there is one.
    """

    def tag(value: Any) -> str | None:
        if isinstance(value, dict):
            raw = value.get("type", absent)
        else:
            raw = getattr(value, "type", None) or absent
        if not isinstance(raw, str):
            return None
        if other is not None and raw not in tags and raw != absent:
            return other
        return raw

    return Discriminator(
        tag,
        custom_error_type=UNSUPPORTED_TYPE,
        custom_error_message=f"unknown {label}",
        custom_error_context={"label": label, "supported": ", ".join(sorted(tags))},
    )
