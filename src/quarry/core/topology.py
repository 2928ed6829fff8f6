"""The single place that derives what a process runs from its role and overrides."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from quarry.core.settings import OnOff, Role, Settings


@dataclass(frozen=True)
class Topology:
    role: Role
    serves_reads: bool
    serves_ide_routes: bool
    proxies_ide_routes: bool
    inprocess_workers: bool
    global_driver: bool

    def describe(self) -> dict[str, Any]:
        data = asdict(self)
        data["role"] = self.role.value
        return data


_DEFAULTS: dict[Role, tuple[bool, bool, bool, bool, bool]] = {
    #            reads, ide routes, proxy, workers, driver
    Role.IDE: (True, True, False, True, True),
    Role.SERVE: (True, False, True, False, False),
    Role.WORKER: (False, False, False, True, True),
    Role.ALL: (True, True, False, True, True),
}


def _override(default: bool, value: OnOff | None) -> bool:
    return default if value is None else value == "on"


def derive_topology(settings: Settings) -> Topology:
    reads, ide, proxy, workers, driver = _DEFAULTS[settings.role]
    return Topology(
        role=settings.role,
        serves_reads=reads,
        serves_ide_routes=ide,
        proxies_ide_routes=proxy,
        inprocess_workers=_override(workers, settings.inprocess_workers),
        global_driver=_override(driver, settings.global_driver),
    )
