"""A demo workspace written once per session (the tests only read it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from quarry.demo import create_demo_workspace


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_demo_workspace(tmp_path_factory.mktemp("demo") / "workspace")
