"""Human log levels: the machinery's INFO is DEBUG for people, unless verbose."""

from __future__ import annotations

import logging

import pytest

from quarry.core import logs


def _passes(name: str, level: int, threshold: int = logging.INFO) -> bool:
    record = logging.LogRecord(name, level, __file__, 1, "message", None, None)
    return logs.HumanLevels(threshold, logs.QUIET_FOR_HUMANS).filter(record)


def test_machinery_info_is_debug_for_people() -> None:
    assert not _passes("alembic.runtime.migration", logging.INFO)
    assert not _passes("quarry.node.services", logging.INFO)
    assert _passes("alembic.runtime.migration", logging.INFO, threshold=logging.DEBUG)


def test_warnings_and_other_loggers_still_show() -> None:
    assert _passes("alembic.runtime.migration", logging.WARNING)
    assert _passes("quarry.scheduling.driver", logging.INFO)
    assert _passes("alembicish", logging.INFO)  # a prefix is not a parent logger


@pytest.fixture
def restore_logging() -> object:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield None
    logs.set_verbose(False)
    root.handlers[:], root.level = handlers, level


def test_verbose_shows_everything(restore_logging: object) -> None:
    logs.set_verbose(True)
    logs.configure_logging("INFO", "text")
    (handler,) = logging.getLogger().handlers
    record = logging.LogRecord("alembic", logging.INFO, __file__, 1, "m", None, None)
    assert handler.filter(record)
    logs.set_verbose(False)
    logs.configure_logging("INFO", "text")
    (handler,) = logging.getLogger().handlers
    assert not handler.filter(record)
