"""Providers through the real SDKs over real sockets to the scripted model server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any

import pytest

from quarry.agents.providers.anthropic import AnthropicProvider
from quarry.agents.providers.base import Message, ModelProvider, ProviderError, ToolSpec
from quarry.agents.providers.configured import make_provider
from quarry.agents.providers.google import GoogleProvider
from quarry.agents.providers.openai import OpenAIProvider
from quarry.definitions.models.config import WorkspaceConfig
from quarry.runtime.connectors.policy import ConnectorPolicy
from quarry.runtime.connectors.secrets import SecretResolver
from tests.support.model_server import Call, ModelServer, Reply, text_reply

SQL_TOOL = ToolSpec(
    "execute_sql",
    "Execute the SQL query.",
    {"type": "object", "properties": {"sql": {"type": "string"}}, "required": ["sql"]},
)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


def provider(vendor: str, server: ModelServer, **options: Any) -> ModelProvider:
    if vendor == "openai":
        return OpenAIProvider("gpt", "gpt-test", "sk-test", api_url=server.openai_url, **options)
    if vendor == "google":
        return GoogleProvider(
            "gemini", "gemini-test", "g-test", api_url=server.google_url, **options
        )
    return AnthropicProvider(
        "claude", "claude-test", "sk-ant-test", api_url=server.anthropic_url, **options
    )


async def call(p: ModelProvider, *args: Any, **kwargs: Any) -> Any:
    try:
        return await p.complete(*args, **kwargs)
    finally:
        await p.close()


VENDORS = ["openai", "anthropic", "google"]


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("stream", [False, True])
def test_text_and_tool_calls_round_trip(vendor: str, stream: bool) -> None:
    script = [
        Reply(
            calls=[
                Call("execute_sql", {"sql": "SELECT 1"}),
                Call("execute_sql", {"sql": "SELECT 2"}),
            ]
        ),
        text_reply("There is one order.", match="result one"),
    ]
    deltas: list[str] = []
    sink = deltas.append if stream else None
    with ModelServer(script) as server:
        first = run(
            call(
                provider(vendor, server),
                "be brief",
                [Message("user", "how many?")],
                [SQL_TOOL],
                on_delta=sink,
            )
        )
        assert [json.loads(c.arguments) for c in first.tool_calls] == [
            {"sql": "SELECT 1"},
            {"sql": "SELECT 2"},
        ]
        assert first.usage.input_tokens == 11 and first.usage.output_tokens == 7
        history = [
            Message("user", "how many?"),
            Message("assistant", "", first.tool_calls),
            Message("tool", "result one", tool_call_id=first.tool_calls[0].id),
            Message("tool", "result one too", tool_call_id=first.tool_calls[1].id),
        ]
        second = run(call(provider(vendor, server), "be brief", history, [SQL_TOOL], on_delta=sink))
        assert second.text == "There is one order."
        assert second.tool_calls == ()
        sent = server.requests[1].body
    if stream:
        assert len(deltas) > 1 and "".join(deltas) == "There is one order."
    if vendor == "openai":
        assert sent["messages"][0] == {"role": "system", "content": "be brief"}
        assert sent["messages"][-1]["role"] == "tool"
    elif vendor == "google":
        assert sent["systemInstruction"]["parts"] == [{"text": "be brief"}]
        assert [c["role"] for c in sent["contents"]] == ["user", "model", "user"]
        calls = [p["functionCall"] for p in sent["contents"][1]["parts"]]
        assert [c["args"] for c in calls] == [{"sql": "SELECT 1"}, {"sql": "SELECT 2"}]
        # Both results in one user content, each named after its function and id.
        results = [p["functionResponse"] for p in sent["contents"][-1]["parts"]]
        assert [(r["name"], r["response"]) for r in results] == [
            ("execute_sql", {"result": "result one"}),
            ("execute_sql", {"result": "result one too"}),
        ]
        assert [r["id"] for r in results] == [c.id for c in first.tool_calls]
        tool = sent["tools"][0]["functionDeclarations"][0]
        # the JSON schema as is (the SDK names the field in proto's snake case)
        schema = tool.get("parametersJsonSchema", tool.get("parameters_json_schema"))
        assert tool["name"] == "execute_sql" and schema == SQL_TOOL.parameters
        assert server.requests[1].path.endswith(
            ":streamGenerateContent" if stream else ":generateContent"
        )
        assert server.requests[1].headers["x-goog-api-key"] == "g-test"
    else:
        assert sent["system"] == "be brief"
        # Both results in one user message, as the Messages API requires.
        assert [b["type"] for b in sent["messages"][-1]["content"]] == ["tool_result"] * 2


@pytest.mark.parametrize("vendor", VENDORS)
def test_429_waits_for_retry_after_then_succeeds(vendor: str) -> None:
    script = [
        Reply(status=429, error="slow down", headers={"retry-after": "1"}),
        text_reply("ok"),
    ]
    with ModelServer(script) as server:
        answer = run(call(provider(vendor, server), "s", [Message("user", "q")], []))
        first, second = server.requests
    assert answer.text == "ok"
    assert second.at - first.at >= 0.95  # the SDK waited as the server asked


@pytest.mark.parametrize("vendor", VENDORS)
def test_500_is_retried_and_a_persistent_error_is_reported(vendor: str) -> None:
    with ModelServer([Reply(status=500, error="boom"), text_reply("ok")]) as server:
        assert run(call(provider(vendor, server), "s", [Message("user", "q")], [])).text == "ok"
        assert len(server.requests) == 2
    with ModelServer([Reply(status=500, error="still broken")] * 2) as server:
        with pytest.raises(ProviderError, match="answered 500: still broken"):
            run(call(provider(vendor, server, max_retries=1), "s", [Message("user", "q")], []))
        assert len(server.requests) == 2


@pytest.mark.parametrize("vendor", VENDORS)
def test_timeout(vendor: str) -> None:
    with ModelServer([Reply(text="late", delay=3)]) as server:
        p = provider(vendor, server, timeout=0.5, max_retries=0)
        with pytest.raises(ProviderError, match="no answer within the timeout"):
            run(call(p, "s", [Message("user", "q")], []))


def _config(server: ModelServer) -> WorkspaceConfig:
    return WorkspaceConfig.model_validate(
        {
            "databases": [],
            "models": [
                {
                    "name": "gpt",
                    "vendor": "openai",
                    "model_ref": "gpt-x",
                    "key_var": "MY_OPENAI_KEY",
                    "api_url": server.openai_url,
                },
                {
                    "name": "claude",
                    "vendor": "anthropic",
                    "model_ref": "c-x",
                    "key_var": "MY_ANTHROPIC_KEY",
                    "api_url": server.anthropic_url,
                },
                {
                    "name": "local",
                    "vendor": "ollama",
                    "model_ref": "llama3",
                    "api_key": "ollama",
                    "api_url": server.openai_url,
                },
                {
                    "name": "azure",
                    "vendor": "openai",
                    "model_ref": "gpt-4o",
                    "key_var": "MY_AZURE_KEY",
                    "api_url": server.anthropic_url,  # the server's root: the resource
                    "azure_deployment_id": "prod-4o",
                    "azure_api_version": "2024-10-21",
                },
                {
                    "name": "gemini",
                    "vendor": "google",
                    "model_ref": "gemini-x",
                    "key_var": "MY_GOOGLE_KEY",
                    "api_url": server.google_url,
                },
                {
                    "name": "leaky",
                    "vendor": "openai",
                    "model_ref": "x",
                    "key_var": "QUARRY_STATE_URL",
                },
            ],
        }
    )


def test_configured_models_read_keys_from_the_named_variables() -> None:
    env = {
        "MY_AZURE_KEY": "az-from-env",
        "MY_OPENAI_KEY": "sk-from-env",
        "MY_ANTHROPIC_KEY": "ant-from-env",
        "MY_GOOGLE_KEY": "g-from-env",
        "QUARRY_STATE_URL": "postgres://x",
    }
    secrets = SecretResolver(ConnectorPolicy(fleet=False), "t1", lambda name: env.get(name))
    with ModelServer([text_reply(x) for x in "abcde"]) as server:
        config = _config(server)
        for name in ("gpt", "claude", "local", "azure", "gemini"):
            run(call(make_provider(config, name, secrets), "s", [Message("user", "q")], []))
        gpt, claude, local, azure, gemini = server.requests
        with pytest.raises(
            Exception,
            match="'leaky': key_var names 'QUARRY_STATE_URL', which this tenant may not read",
        ):
            make_provider(config, "leaky", secrets)
        empty = SecretResolver(ConnectorPolicy(fleet=False), "t1", lambda name: None)
        with pytest.raises(
            Exception, match="'gpt': key_var names 'MY_OPENAI_KEY', which is not set"
        ):
            make_provider(config, "gpt", empty)
        with pytest.raises(Exception, match="no model named 'nope'"):
            make_provider(config, "nope", secrets)
    assert gpt.headers["authorization"] == "Bearer sk-from-env"
    assert gpt.body["model"] == "gpt-x"
    # This SDK version sends the key as a bearer token; older ones as x-api-key.
    sent = claude.headers.get("x-api-key") or claude.headers["authorization"]
    assert sent.removeprefix("Bearer ") == "ant-from-env"
    assert local.headers["authorization"] == "Bearer ollama"
    assert azure.path == "/openai/deployments/prod-4o/chat/completions"
    assert azure.query == "api-version=2024-10-21"
    assert azure.headers["api-key"] == "az-from-env"
    assert gemini.headers["x-goog-api-key"] == "g-from-env"
    assert gemini.path.endswith("/models/gemini-x:generateContent")
    assert secrets.redact("key sk-from-env leaked") == "key [secret] leaked"
