"""What can still be read from a ``config.yml`` that does not validate.

One mistake in config.yml must not hide every other problem of the workspace
(``quarry compile --check`` reports them all), but the other files are checked
against the databases and models config.yml defines. So the names of its entries
are read from it whether or not each entry validates, and a reference check that
would need an unreadable section is skipped rather than reported against an empty
list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from quarry.core.errors import CompileFailed
from quarry.definitions.models.config import Database, WorkspaceConfig, dataset_dirs
from quarry.definitions.references import RefKind
from quarry.definitions.yaml_nodes import load_document

_DATABASE: TypeAdapter[Any] = TypeAdapter(Database)


@dataclass(frozen=True)
class ConfigFacts:
    """Names and folders from config.yml; ``None`` where the section is unreadable."""

    databases: set[str] | None
    models: set[str] | None
    dataset_dirs: list[str]

    def unchecked_refs(self) -> set[RefKind]:
        """Reference kinds that cannot be checked fairly: their list in config.yml
        could not be read."""
        unchecked = set()
        if self.databases is None:
            unchecked.add(RefKind.DATABASE)
        if self.models is None:
            unchecked.add(RefKind.MODEL)
        return unchecked


def facts_of(config: WorkspaceConfig) -> ConfigFacts:
    return ConfigFacts(
        databases={db.name for db in config.databases},
        models={m.name for m in config.models},
        dataset_dirs=dataset_dirs(config),
    )


def salvage(path: str, data: bytes) -> ConfigFacts:
    """The facts of a broken config.yml, as far as they can be read.

    Every entry with a text ``name`` counts as defined, valid or not (its own error
    is reported already; references to it should not add more). Data folders come
    from the entries that validate.
    """
    try:
        value = load_document(path, data).value
    except CompileFailed:
        return ConfigFacts(databases=None, models=None, dataset_dirs=[])
    databases = value.get("databases")
    models = value.get("models", [])
    partial = WorkspaceConfig.model_construct(databases=_valid(databases), models=[])
    return ConfigFacts(
        databases=_names(databases),
        models=_names(models),
        dataset_dirs=dataset_dirs(partial),
    )


def _names(section: Any) -> set[str] | None:
    if not isinstance(section, list):
        return None
    return {
        item["name"]
        for item in section
        if isinstance(item, dict) and isinstance(item.get("name"), str)
    }


def _valid(section: Any) -> list[Any]:
    """The database entries that validate on their own."""
    valid = []
    for item in section if isinstance(section, list) else []:
        try:
            valid.append(_DATABASE.validate_python(item))
        except ValidationError:
            continue
    return valid
