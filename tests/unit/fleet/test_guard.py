from __future__ import annotations

import importlib

import pytest

from quarry.core.errors import ReadOnlyViolation
from quarry.fleet.guard import assert_read_only, factory_imported


def test_guard_raises_super_read_only_once_the_factory_is_loaded() -> None:
    importlib.import_module("quarry.factory.local")
    assert factory_imported()
    with pytest.raises(ReadOnlyViolation, match="super_read_only") as raised:
        assert_read_only("serve")
    assert raised.value.code == "super_read_only"
