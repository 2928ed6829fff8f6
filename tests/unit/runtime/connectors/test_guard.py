"""Warehouse host checks: every resolved address is judged, by the operator's lists
and by the loopback rule of fleet mode."""

from __future__ import annotations

import pytest

from quarry.runtime.connectors.guard import TargetRefused, check_host, check_identity
from quarry.runtime.connectors.policy import ConnectorPolicy

FLEET = ConnectorPolicy()
LOCAL = ConnectorPolicy.local()


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "127.8.9.10",
        "::1",
        "169.254.169.254",
        "0.0.0.0",
        "::ffff:127.0.0.1",
    ],
)
def test_fleet_mode_refuses_loopback_and_link_local(host: str) -> None:
    with pytest.raises(TargetRefused, match="loopback or link-local"):
        check_host("wh", host, 5432, FLEET)


def test_local_mode_allows_loopback() -> None:
    assert "127.0.0.1" in check_host("wh", "localhost", 5432, LOCAL).addresses


def test_the_opt_in_allows_loopback_in_fleet_mode() -> None:
    policy = ConnectorPolicy(warehouse_allow_loopback=True)
    assert check_host("wh", "127.0.0.1", 5432, policy).addresses == ("127.0.0.1",)


@pytest.mark.parametrize(
    "host", [None, "", "/var/run/postgresql", "@abstract", "a.example,b.example"]
)
def test_fleet_mode_needs_one_network_host(host: str | None) -> None:
    with pytest.raises(TargetRefused):
        check_host("wh", host, 5432, FLEET)


def test_deny_list_matches_networks_and_host_globs() -> None:
    by_network = ConnectorPolicy(warehouse_deny=("10.0.0.0/8",))
    with pytest.raises(TargetRefused, match="deny list"):
        check_host("wh", "10.1.2.3", 5432, by_network)
    by_name = ConnectorPolicy(warehouse_deny=("*.internal",), warehouse_allow_loopback=True)
    with pytest.raises(TargetRefused, match="deny list"):
        check_host("wh", "127.0.0.1", 5432, ConnectorPolicy(warehouse_deny=("127.0.0.1",)))
    assert check_host("wh", "127.0.0.1", 5432, by_name).addresses == ("127.0.0.1",)


def test_allow_list_is_exclusive() -> None:
    policy = ConnectorPolicy(warehouse_allow=("192.0.2.0/24", "*.warehouse.example"))
    assert check_host("wh", "192.0.2.7", 5432, policy).addresses == ("192.0.2.7",)
    with pytest.raises(TargetRefused, match="allow list"):
        check_host("wh", "198.51.100.1", 5432, policy)


def test_a_host_that_resolves_nowhere_is_an_error_without_the_host() -> None:
    with pytest.raises(Exception, match="cannot resolve") as caught:
        check_host("wh", "secret-host.invalid", 5432, FLEET)
    assert "secret-host" not in str(caught.value)


def test_identity_check() -> None:
    policy = ConnectorPolicy(state_cluster="123")
    check_identity("wh", "456", policy)
    with pytest.raises(TargetRefused, match="state database cluster"):
        check_identity("wh", "123", policy)
    with pytest.raises(TargetRefused, match="did not give its cluster identity"):
        check_identity("wh", None, policy)
    check_identity(
        "wh", "123", ConnectorPolicy(state_cluster="123", warehouse_allow_state_cluster=True)
    )
    check_identity("wh", None, ConnectorPolicy())
