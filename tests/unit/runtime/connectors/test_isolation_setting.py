"""Where tenant SQL runs by default: in a child process on the Factory in fleet mode
(it holds every secret of the fleet), inline elsewhere; the operator decides."""

from __future__ import annotations

import pytest

from quarry.core.settings import Role, Settings
from quarry.runtime.connectors.policy import ConnectorPolicy

FLEET = "postgresql://quarry@db.internal/quarry"
LOCAL = "sqlite:///tmp/quarry.db"


@pytest.mark.parametrize(
    ("database_url", "role", "expected"),
    [
        (FLEET, Role.ALL, "process"),
        (FLEET, Role.IDE, "process"),
        (FLEET, Role.WORKER, "inline"),
        (FLEET, Role.SERVE, "inline"),
        (LOCAL, Role.ALL, "inline"),
    ],
)
def test_default_by_role_and_mode(database_url: str, role: Role, expected: str) -> None:
    settings = Settings(database_url=database_url, blob_url="file:///tmp/b", role=role)
    assert ConnectorPolicy.from_settings(settings).tenant_sql_isolation == expected


@pytest.mark.parametrize("value", ["process", "inline"])
def test_the_operator_chooses(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("QUARRY_TENANT_SQL_ISOLATION", value)
    for url, role in ((FLEET, Role.WORKER), (FLEET, Role.ALL), (LOCAL, Role.ALL)):
        settings = Settings(database_url=url, blob_url="file:///tmp/b", role=role)
        assert ConnectorPolicy.from_settings(settings).tenant_sql_isolation == value


def test_a_bad_value_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUARRY_TENANT_SQL_ISOLATION", "container")
    with pytest.raises(ValueError, match="tenant_sql_isolation"):
        Settings(database_url=FLEET, blob_url="file:///tmp/b")
