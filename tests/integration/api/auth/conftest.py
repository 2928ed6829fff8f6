from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.tenancy import Deployment, postgres_settings, s3_url, two_tenants


@pytest.fixture
def deployment(
    request: pytest.FixtureRequest,
    pg_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Deployment]:
    """Role ``all`` on Postgres + S3 (so the IdeOnly routes exist too), tokens required."""
    settings = postgres_settings(pg_database, s3_url(request, monkeypatch), tmp_path)
    with two_tenants(settings, tmp_path) as dep:
        yield dep
