"""The read-only guard: a serve replica must be unable to touch workspace files.

The Factory package is what reads and writes working copies; a serve process never
imports it (an import-linter contract keeps the serve-side packages from importing
it at all, and the application mounts IdeOnly routers only when the role serves
them). This module checks the running process, at start and on demand.
"""

from __future__ import annotations

import sys

from quarry.core.errors import ReadOnlyViolation

FACTORY_PACKAGE = "quarry.factory"


def factory_imported() -> bool:
    return any(
        name == FACTORY_PACKAGE or name.startswith(FACTORY_PACKAGE + ".") for name in sys.modules
    )


def assert_read_only(role: str) -> None:
    """Fail loudly if a process that must not touch working copies loaded the Factory."""
    if factory_imported():
        raise ReadOnlyViolation(
            f"super_read_only: this {role} process has imported {FACTORY_PACKAGE}, the code "
            "that reads and writes workspace folders; a serve replica must never load it"
        )
