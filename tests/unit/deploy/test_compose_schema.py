"""``deploy/compose.yaml`` validates against the Compose Specification JSON schema.

No compose tool runs on these machines (no docker, no podman compose), so the file
cannot be started here; what can be checked offline is the schema.
``deploy/schemas/compose/compose_spec.json`` is the Compose Specification's
``compose_spec.json`` as shipped in the ``docker-compose`` 1.29.2 package on PyPI
(``compose/config/compose_spec.json``, May 2021, Apache-2.0), copied unchanged. It
predates one key this file uses: the top-level project ``name`` (added to the spec
later in 2021), so that key is checked here against the spec's current rule (lower
case letters, digits, ``-`` and ``_``, starting with a letter or digit) and the rest
of the document against the schema. Services are ``additionalProperties: false`` in
the schema, so a misspelt key fails the test (shown below).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((REPO / "deploy" / "schemas" / "compose" / "compose_spec.json").read_text())
PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def _document() -> dict[str, Any]:
    # safe_load resolves the anchors and ``<<`` merge keys as compose does.
    loaded: dict[str, Any] = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
    return loaded


def _errors(document: dict[str, Any]) -> list[str]:
    rest = {k: v for k, v in document.items() if k != "name"}
    validator = jsonschema.Draft201909Validator(SCHEMA)
    found = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(rest)]
    if "name" in document and not PROJECT_NAME.match(str(document["name"])):
        found.append(f"name: {document['name']!r} is not a valid project name")
    return found


def test_the_schema_is_the_compose_specification() -> None:
    jsonschema.Draft201909Validator.check_schema(SCHEMA)
    assert SCHEMA["id"] == "compose_spec.json"
    assert "services" in SCHEMA["properties"]


def test_compose_yaml_validates() -> None:
    assert _errors(_document()) == []


@pytest.mark.parametrize(
    ("case", "mutate", "expected"),
    [
        (
            "misspelt-key",
            lambda d: d["services"]["serve-1"].update(healthchek={}),
            "healthchek",
        ),
        (
            "bad-condition",
            lambda d: d["services"]["factory"]["depends_on"]["migrate"].update(
                condition="service_done"
            ),
            "service_done",
        ),
        ("bad-name", lambda d: d.update(name="Quarry Fleet"), "project name"),
        (
            "env-list-as-number",
            lambda d: d["services"]["worker-1"].update(environment=5),
            "environment",
        ),
    ],
    ids=["misspelt-key", "bad-condition", "bad-name", "env-list-as-number"],
)
def test_a_broken_file_is_caught(case: str, mutate: Any, expected: str) -> None:
    document = _document()
    mutate(document)
    errors = _errors(document)
    assert any(expected in e for e in errors), (case, errors)
