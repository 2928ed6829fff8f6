"""Start-up cost (issue #20): a compile of an unchanged workspace starts no compile
process. config.yml's facts are kept in the stat cache by the sha256 of its bytes, so
it is not parsed again; with every other parse reused there is nothing to parse.
``statcache.parse_needed`` tells ``quarry run`` beforehand whether to start one ahead."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from quarry.core.errors import CompileFailed
from quarry.factory import isolation, statcache
from quarry.factory.local import compile_local
from quarry.node.services import Services

pytestmark = pytest.mark.backend_agnostic

WORKFLOW = "workflows/monthly_revenue.workflow.yml"
STATE = ".quarry"  # local mode's default data folder (never scanned)


@pytest.fixture
def no_idle_process() -> Iterator[None]:
    isolation.POOL.close_all()
    yield
    isolation.POOL.close_all()


def _idle_processes() -> int:
    """Compile processes in the pool: a compile gives back the one it started."""
    return sum(len(idle) for idle in isolation.POOL._idle.values())


def _compile(services: Services, workspace: Path) -> int:
    return compile_local(services.engine, services.store, "local", workspace, "shop").parsed


def test_an_unchanged_workspace_starts_no_compile_process(
    services: Services, workspace: Path, no_idle_process: None
) -> None:
    assert _compile(services, workspace) > 0
    assert _idle_processes() == 1  # the first compile parsed in a compile process
    assert statcache.parse_needed(workspace / STATE, workspace) is False
    isolation.POOL.close_all()
    assert _compile(services, workspace) == 0
    assert _idle_processes() == 0  # none started: config.yml's facts came from the cache


def test_a_changed_config_is_parsed_again(
    services: Services, workspace: Path, no_idle_process: None
) -> None:
    _compile(services, workspace)
    config = workspace / "config.yml"
    text = config.read_text()
    config.write_text(text + "\n# a comment changes the bytes\n")
    assert statcache.parse_needed(workspace / STATE, workspace) is True
    isolation.POOL.close_all()
    assert _compile(services, workspace) == 1  # config.yml only
    assert _idle_processes() == 1
    # The facts follow the bytes: a database removed from config.yml is missed again.
    config.write_text(text.replace("name: local", "name: elsewhere", 1))
    with pytest.raises(CompileFailed, match="local"):
        _compile(services, workspace)


def test_a_changed_definition_needs_a_parse(services: Services, workspace: Path) -> None:
    _compile(services, workspace)
    path = workspace / WORKFLOW
    path.write_text(path.read_text() + "\n# edited\n")
    assert statcache.parse_needed(workspace / STATE, workspace) is True
    _compile(services, workspace)
    assert statcache.parse_needed(workspace / STATE, workspace) is False


def test_no_cache_means_a_parse_is_needed(tmp_path: Path, workspace: Path) -> None:
    assert statcache.parse_needed(tmp_path / "nothing", workspace) is True
