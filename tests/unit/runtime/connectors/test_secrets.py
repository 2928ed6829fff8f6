"""Which ``*_var`` names resolve, per mode and tenant; values are redacted from messages."""

from __future__ import annotations

import pytest

from quarry.runtime.connectors.base import ConnectorError
from quarry.runtime.connectors.policy import ConnectorPolicy
from quarry.runtime.connectors.secrets import SecretNotAllowed, SecretResolver

ENV = {
    "QUARRY_DATABASE_URL": "postgresql://state",
    "QUARRY_BLOB_URL": "s3://bucket",
    "QUARRY_METRICS_TOKEN": "metrics",
    "AWS_SECRET_ACCESS_KEY": "aws",
    "PG_PASSWORD": "hunter2",
    "ACME_PASSWORD": "acme-pw",
}


def resolver(policy: ConnectorPolicy, tenant: str = "globex") -> SecretResolver:
    return SecretResolver(policy, tenant, ENV.get)


@pytest.mark.parametrize(
    "policy",
    [ConnectorPolicy.local(), ConnectorPolicy(secret_env_allow={"*": ["*"]})],
    ids=["local", "fleet-allow-all"],
)
@pytest.mark.parametrize(
    "name",
    [
        "QUARRY_DATABASE_URL",
        "QUARRY_BLOB_URL",
        "QUARRY_METRICS_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "quarry_database_url",
    ],
)
def test_quarry_and_object_store_names_never_resolve(policy: ConnectorPolicy, name: str) -> None:
    with pytest.raises(SecretNotAllowed) as caught:
        resolver(policy).resolve("wh", "password_var", name)
    assert name in caught.value.message and "password_var" in caught.value.message
    assert all(value not in caught.value.message for value in ENV.values())


def test_local_mode_resolves_other_names() -> None:
    assert (
        resolver(ConnectorPolicy.local()).resolve("wh", "password_var", "PG_PASSWORD") == "hunter2"
    )


def test_fleet_mode_resolves_nothing_by_default() -> None:
    with pytest.raises(SecretNotAllowed, match="QUARRY_SECRET_ENV_ALLOW"):
        resolver(ConnectorPolicy()).resolve("wh", "password_var", "PG_PASSWORD")


def test_fleet_allow_list_is_per_tenant() -> None:
    policy = ConnectorPolicy(secret_env_allow={"acme": ["ACME_*"], "*": ["PG_PASSWORD"]})
    assert resolver(policy, "acme").resolve("wh", "password_var", "ACME_PASSWORD") == "acme-pw"
    assert resolver(policy, "globex").resolve("wh", "password_var", "PG_PASSWORD") == "hunter2"
    with pytest.raises(SecretNotAllowed):
        resolver(policy, "globex").resolve("wh", "password_var", "ACME_PASSWORD")


def test_an_unset_variable_is_named_not_guessed() -> None:
    with pytest.raises(ConnectorError, match="'NOPE', which is not set"):
        resolver(ConnectorPolicy.local()).resolve("wh", "host_var", "NOPE")


def test_redact_strips_every_value_handed_out() -> None:
    secrets = resolver(ConnectorPolicy.local())
    secrets.resolve("wh", "password_var", "PG_PASSWORD")
    message = 'FATAL: password authentication failed: "hunter2"'
    assert "hunter2" not in secrets.redact(message)
    assert secrets.redact("nothing secret") == "nothing secret"
