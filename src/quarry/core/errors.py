"""Quarry's error hierarchy.

Every error a user can cause carries an HTTP status and a stable machine-readable
``code`` so the API, the CLI and the logs describe the same failure the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class QuarryError(Exception):
    """Base class: a failure with a message fit to show a user."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class NotFound(QuarryError):
    status_code = 404
    code = "not_found"


class BadRequest(QuarryError):
    status_code = 400
    code = "bad_request"


class Conflict(QuarryError):
    status_code = 409
    code = "conflict"


class PromotionConflict(Conflict):
    """Another promotion moved ``current_revision_id`` since this compile read it."""

    code = "promotion_conflict"


class ConfigurationError(QuarryError):
    """Settings that cannot work together; raised at start, before serving anything."""

    code = "configuration_error"


class SchemaMismatch(QuarryError):
    """The database schema is not one this release understands."""

    code = "schema_mismatch"


class ReadOnlyViolation(QuarryError):
    """A serve replica tried to touch a workspace folder (``super_read_only``)."""

    status_code = 500
    code = "super_read_only"


ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True, order=True)
class Problem:
    """One finding about a workspace file, positioned for an editor (1-based).

    ``severity`` is ``"error"`` (the file cannot be used) or ``"warning"`` (it is
    used, but something in it is ignored, as Oxy ignores it); warnings never block
    a promotion unless the compile is strict.
    """

    path: str
    line: int
    column: int
    message: str
    severity: str = ERROR

    @property
    def is_warning(self) -> bool:
        return self.severity == WARNING

    def as_error(self) -> Problem:
        return Problem(self.path, self.line, self.column, self.message, ERROR)

    def __str__(self) -> str:
        marker = "warning: " if self.severity == WARNING else ""
        return f"{self.path}:{self.line}:{self.column}: {marker}{self.message}"


@dataclass
class CompileFailed(QuarryError):
    """The working copy did not compile; nothing was promoted."""

    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        count = len(self.problems)
        first = str(self.problems[0]) if self.problems else "no details"
        QuarryError.__init__(
            self,
            f"compile failed with {count} problem{'s' if count != 1 else ''}; first: {first}",
            problems=[p.__dict__ for p in self.problems],
        )

    status_code = 422
    code = "compile_failed"
