"""Where a warehouse connection may go: checked before connecting and after.

Before: the host must pass the operator's allow/deny lists, and every address it
resolves to must too (loopback, link-local and unspecified addresses are refused in
fleet mode unless ``QUARRY_WAREHOUSE_ALLOW_LOOPBACK``). The connection then goes to
the address that was checked (``hostaddr``), so a second DNS answer cannot swap it.

After: the server's cluster identity is compared with the state database's, so a
target that *is* Quarry's own cluster is refused however its host is spelled
(``localhost``, another address, another database name of the same cluster).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
from dataclasses import dataclass

from quarry.runtime.connectors.base import ConnectorError
from quarry.runtime.connectors.policy import ConnectorPolicy

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(ConnectorError):
    status_code = 403
    code = "connector_target_refused"


@dataclass(frozen=True)
class CheckedTarget:
    host: str
    addresses: tuple[str, ...]


def _address(text: str) -> Address | None:
    try:
        found = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


def _matches(entry: str, host: str, address: Address | None) -> bool:
    """``entry`` is an IP, a CIDR network or a host-name glob."""
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return fnmatch.fnmatchcase(host.lower(), entry.lower())
    return address is not None and address in network


def _local_only(address: Address) -> bool:
    return address.is_loopback or address.is_link_local or address.is_unspecified


def resolve(host: str, port: int) -> tuple[str, ...]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ConnectorError(f"cannot resolve the host: {exc.strerror or exc}") from None
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))


def check_host(
    database: str, host: str | None, port: int, policy: ConnectorPolicy
) -> CheckedTarget:
    """The addresses ``host`` may be reached at; :class:`TargetRefused` if none may.

    Messages name the database and the rule, not the host: the host may come from a
    secret (``host_var``).
    """

    def refuse(why: str) -> TargetRefused:
        return TargetRefused(f"database {database!r}: {why}", database=database)

    if not host:
        if policy.fleet:
            raise refuse("a host is required (the worker's own defaults are not for workspaces)")
        return CheckedTarget("", ())
    if "," in host:
        raise refuse("give one host per database")
    if host.startswith(("/", "@")):
        if policy.warehouse_allow_loopback:
            return CheckedTarget(host, ())
        raise refuse("a local socket is not a warehouse (loopback is off in fleet mode)")
    addresses = resolve(host, port)
    if not addresses:
        raise refuse("the host resolves to no address")
    parsed = [(a, _address(a)) for a in addresses]
    for text, address in parsed:
        if any(_matches(entry, host, address) for entry in policy.warehouse_deny):
            raise refuse("the host is on the operator's deny list (QUARRY_WAREHOUSE_DENY)")
        if address is None:
            raise refuse(f"the host resolved to {text!r}, which is not an IP address")
        if _local_only(address) and not policy.warehouse_allow_loopback:
            raise refuse(
                "the host is a loopback or link-local address, refused in fleet mode "
                "(QUARRY_WAREHOUSE_ALLOW_LOOPBACK)"
            )
        if policy.warehouse_allow and not any(
            _matches(entry, host, address) for entry in policy.warehouse_allow
        ):
            raise refuse("the host is not on the operator's allow list (QUARRY_WAREHOUSE_ALLOW)")
    return CheckedTarget(host, addresses)


def check_identity(database: str, identity: str | None, policy: ConnectorPolicy) -> None:
    """Refuse a server that is the state database's cluster (or will not say which it is)."""
    if policy.state_cluster is None or policy.warehouse_allow_state_cluster:
        return
    if identity is None:
        raise TargetRefused(
            f"database {database!r}: the server did not give its cluster identity, so it "
            "cannot be told apart from Quarry's state database",
            database=database,
        )
    if identity == policy.state_cluster:
        raise TargetRefused(
            f"database {database!r}: the server is Quarry's own state database cluster; "
            "workspaces may not connect to it",
            database=database,
        )
