"""Helpers shared by the definitions tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from quarry.core.errors import CompileFailed
from quarry.definitions import ParsedDefinition, parse_definition

SAMPLES = Path(__file__).parent / "samples"


def parse_text(path: str, text: str) -> ParsedDefinition:
    return parse_definition(path, textwrap.dedent(text).encode())


def problems_of(path: str, text: str | bytes) -> list[str]:
    """Every problem of a file that must fail, as ``path:line:col: message``."""
    data = text if isinstance(text, bytes) else textwrap.dedent(text).encode()
    with pytest.raises(CompileFailed) as caught:
        parse_definition(path, data)
    return [str(problem) for problem in caught.value.problems]


def warnings_of(path: str, text: str | bytes) -> list[str]:
    """The warnings of a file that must compile, as ``path:line:col: warning: ...``."""
    data = text if isinstance(text, bytes) else textwrap.dedent(text).encode()
    return [str(problem) for problem in parse_definition(path, data).warnings]


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()
