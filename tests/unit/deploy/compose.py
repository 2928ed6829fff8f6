"""``deploy/compose.yaml`` read as the compose tool reads it (anchors and merge keys
resolved), and its services in start order (``depends_on``)."""

from __future__ import annotations

from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).resolve().parents[3] / "deploy" / "compose.yaml"
QUARRY_IMAGE = "localhost/quarry:dev"


def services() -> dict[str, dict[str, Any]]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    result: dict[str, dict[str, Any]] = document["services"]
    return result


def start_order(all_services: dict[str, dict[str, Any]]) -> list[str]:
    graph = {name: set(spec.get("depends_on", {})) for name, spec in all_services.items()}
    return list(TopologicalSorter(graph).static_order())


def role(spec: dict[str, Any]) -> str | None:
    env = spec.get("environment") or {}
    value = env.get("QUARRY_ROLE")
    return None if value is None else str(value)
