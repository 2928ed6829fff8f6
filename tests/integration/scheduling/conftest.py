from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from quarry.node.services import Services, build_services
from tests.conftest import Backend
from tests.integration.scheduling.workspace import Workspace


@pytest.fixture
def svc(backend: Backend, tmp_path: Path) -> Iterator[Services]:
    services = build_services(backend.settings(data_dir=tmp_path / "data", revision_cache_ttl=0))
    yield services
    services.close()


@pytest.fixture
def ws(svc: Services, tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws", svc)
