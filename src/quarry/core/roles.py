"""What a Quarry process is for (``QUARRY_ROLE``), apart from the settings tree so that
the command line can name the roles without importing pydantic-settings (issue #20:
``quarry --help`` and shell completion stay light)."""

from enum import StrEnum


class Role(StrEnum):
    IDE = "ide"
    SERVE = "serve"
    WORKER = "worker"
    ALL = "all"
