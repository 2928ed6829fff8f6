"""Every tool type of the agent format is either run (built for the model by the
toolbox, and accepted silently by the compiler) or offered to no model and warned
about at compile time: the two lists cannot drift apart."""

from __future__ import annotations

import typing
from collections.abc import Callable

import pytest

from quarry.agents.tools.toolbox import build_toolbox
from quarry.definitions.models.agent import RUNNABLE_TOOL_TYPES, DefaultAgentConfig, Tool
from quarry.definitions.models.common import collecting_notes, notes_of
from quarry.runtime.connectors import Connections
from tests.integration.agents.conftest import Workspace

_MINIMAL: dict[str, dict[str, object]] = {
    "execute_sql": {"database": "local"},
    "validate_sql": {"database": "local"},
    "retrieval": {"src": ["docs/*.md"]},
    "workflow": {"workflow_ref": "workflows/monthly_revenue.workflow.yml", "description": "a"},
    "agent": {"agent_ref": "agents/analyst.agent.yml", "description": "a"},
    "omni_query": {"integration": "omni", "topic": "sales"},
    "looker_query": {"integration": "looker", "model": "m", "explore": "e"},
}


def _tool_types() -> list[str]:
    union = typing.get_args(Tool)[0]
    types = []
    for model in typing.get_args(union):
        (literal,) = typing.get_args(model.model_fields["type"].annotation)
        types.append(literal)
    return types


@pytest.mark.parametrize("kind", _tool_types())
def test_a_tool_type_is_run_or_warned_and_offered_to_no_model(
    kind: str, make_workspace: Callable[..., Workspace]
) -> None:
    ws = make_workspace({})
    fields = {"type": kind, "name": f"my_{kind}", **_MINIMAL.get(kind, {})}
    with collecting_notes() as notes:
        try:
            agent = DefaultAgentConfig.model_validate(
                {"model": "gpt", "system_instructions": "hi", "tools": [fields]}
            )
        except Exception as exc:  # a type needing more fields: say which
            pytest.fail(f"{kind}: add its required fields to _MINIMAL ({exc})")
    warned = [m for _loc, m in notes_of(notes, agent) if "is not run by Quarry yet" in m]
    connections = Connections(ws.source, ws.cache)
    try:
        box = build_toolbox(agent, connections)
    finally:
        connections.close()
    if kind in RUNNABLE_TOOL_TYPES:
        assert not warned and not box.not_offered and list(box.tools) == [f"my_{kind}"]
    else:
        assert len(warned) == 1 and box.tools == {}
        assert box.not_offered == [f"my_{kind} ({kind})"]
