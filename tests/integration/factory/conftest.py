from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from quarry.demo import create_demo_workspace
from quarry.node.services import Services, build_services
from tests.conftest import Backend


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return create_demo_workspace(tmp_path / "shop")


@pytest.fixture
def services(backend: Backend, tmp_path: Path) -> Iterator[Services]:
    svc = build_services(backend.settings(data_dir=tmp_path / "data"))
    yield svc
    svc.close()
