"""Resolving ``*_var`` fields: only names the operator allowed for the run's tenant.

A ``config.yml`` field such as ``password_var: PG_PASSWORD`` names an environment
variable of the worker. Left open, any workspace could read any variable of the
process (the state database URL, object-store keys). So a name resolves only if

- it is not one of Quarry's own or the object store's (``QUARRY_*``, ``AWS_*``:
  never, in any mode), and
- fleet mode: ``QUARRY_SECRET_ENV_ALLOW`` lists it (or a glob matching it) for the
  run's tenant or for ``"*"``; local mode: any name, unless that setting is given.

Resolved values are secrets: :meth:`SecretResolver.redact` strips them from any
message (a driver error may quote the host or user it was given).
"""

from __future__ import annotations

import fnmatch
import os
import threading
from collections.abc import Callable

from quarry.runtime.connectors.base import ConnectorError
from quarry.runtime.connectors.policy import ConnectorPolicy

SecretLookup = Callable[[str], str | None]

NEVER_RESOLVABLE = ("QUARRY_*", "AWS_*")
_REDACTED = "[secret]"


class SecretNotAllowed(ConnectorError):
    code = "secret_not_allowed"


class SecretResolver:
    """The ``*_var`` lookups of one run, for one tenant, remembering what it handed out."""

    def __init__(
        self,
        policy: ConnectorPolicy,
        tenant_id: str,
        lookup: SecretLookup = os.environ.get,
    ) -> None:
        self.policy = policy
        self.tenant_id = tenant_id
        self._lookup = lookup
        self._lock = threading.Lock()
        self._handed_out: set[str] = set()

    def allowed(self, name: str) -> bool:
        if any(fnmatch.fnmatchcase(name.upper(), pattern) for pattern in NEVER_RESOLVABLE):
            return False
        rules = self.policy.secret_env_allow
        if rules is None:
            return not self.policy.fleet
        patterns = (*rules.get(self.tenant_id, ()), *rules.get("*", ()))
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)

    def resolve(self, database: str, field: str, name: str) -> str:
        """The value of ``name`` for ``database``'s ``field``; errors name both, never a value."""
        if not self.allowed(name):
            raise SecretNotAllowed(
                f"database {database!r}: {field} names {name!r}, which this tenant may not "
                "read (an operator allows names with QUARRY_SECRET_ENV_ALLOW; QUARRY_* and "
                "AWS_* never resolve)",
                database=database,
                field=field,
                variable=name,
            )
        value = self._lookup(name)
        if value is None:
            raise ConnectorError(
                f"database {database!r}: {field} names {name!r}, which is not set",
                database=database,
                field=field,
                variable=name,
            )
        if value:
            with self._lock:
                self._handed_out.add(value)
        return value

    def redact(self, message: str) -> str:
        """``message`` with every value this resolver handed out replaced."""
        with self._lock:
            values = sorted(self._handed_out, key=len, reverse=True)
        for value in values:
            message = message.replace(value, _REDACTED)
        return message
