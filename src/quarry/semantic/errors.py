"""What the semantic compiler reports: one error for a bad query, problems for bad files."""

from __future__ import annotations

from dataclasses import dataclass

from quarry.core.errors import QuarryError


class SemanticError(QuarryError):
    """A query the semantic layer cannot answer; the message names the member or field.

    Raised before any SQL runs, so a bad query changes nothing.
    """

    status_code = 400
    code = "semantic_error"


@dataclass(frozen=True, order=True)
class SemanticProblem:
    """One compile-time finding about a view or topic.

    ``kind`` is ``"view"`` or ``"topic"`` (or ``"motif"``/``"query"``), ``name`` the
    definition's declared name and ``field`` a dotted path inside it
    (``dimensions.2.expr``), so the Factory can point at the file and line.
    """

    kind: str
    name: str
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.kind} '{self.name}'" + (f" ({self.field})" if self.field else "")
        return f"{where}: {self.message}"
