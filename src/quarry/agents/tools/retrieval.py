"""``retrieval``: the model looks up the workspace's own documents (context files,
verified ``.sql`` queries) most similar to its query, by embeddings, as Oxy's tool.

The documents are the revision's files matching ``src`` (globs), one document per
file. They are embedded once per (revision, sources, model) in this process through
the OpenAI embeddings API (``embed_model``, default ``text-embedding-3-small``, at
``api_url`` with the key of ``key_var``, default ``OPENAI_API_KEY``, or ``api_key``;
any OpenAI-compatible server works; ``embed_model: wordllama``: the local model shipped
in its wheel, :mod:`quarry.agents.embeddings`), the query at each call; the ``top_k`` (default
4) most similar by cosine are the result, each headed by its path.
"""

from __future__ import annotations

import fnmatch
import math
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from quarry.agents.embeddings import LOCAL_MODEL, LocalEmbedder
from quarry.agents.providers.base import ToolSpec, shared_tls
from quarry.agents.providers.configured import resolve_secret
from quarry.agents.tools.base import ToolFailed, ToolOutcome
from quarry.agents.tools.readonly import SqlLimits
from quarry.definitions.models.agent import RetrievalTool
from quarry.runtime.connectors.registry import Connections
from quarry.runtime.source import normalise_path

if TYPE_CHECKING:  # the SDK is imported when a retrieval runs (it is slow to import)
    import openai

DESCRIPTION = "Retrieve the relevant SQL queries to support query generation."
DEFAULT_MODEL = "text-embedding-3-small"
DEFAULT_KEY_VAR = "OPENAI_API_KEY"
DEFAULT_TOP_K = 4
MAX_DOCUMENT_CHARS = 8000
PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"query": {"type": "string", "description": "What to look for."}},
    "required": ["query"],
}

Index = list[tuple[str, str, list[float]]]
Embed = Callable[[list[str]], Awaitable[list[list[float]]]]


async def _local_embed(texts: list[str]) -> list[list[float]]:
    return await LocalEmbedder().embed(texts)


_indexes: OrderedDict[tuple[Any, ...], Index] = OrderedDict()
_lock = threading.Lock()
_KEPT = 32


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


class Retrieval:
    def __init__(self, config: RetrievalTool, connections: Connections, limits: SqlLimits) -> None:
        self.config = config
        self.connections = connections
        self.limits = limits
        self.model = config.embed_model or DEFAULT_MODEL
        self.spec = ToolSpec(
            config.name or "retrieval", config.description or DESCRIPTION, PARAMETERS
        )

    def _client(self) -> openai.AsyncOpenAI:
        import openai

        key = self.config.api_key
        if key is None:
            variable = self.config.key_var or DEFAULT_KEY_VAR
            key = resolve_secret(self.connections.secrets, self.spec.name, "key_var", variable)
        return openai.AsyncOpenAI(
            api_key=key,
            base_url=self.config.api_url,
            http_client=openai.DefaultAsyncHttpxClient(verify=shared_tls()),
        )

    def _documents(self) -> list[tuple[str, str]]:
        source = self.connections.source
        patterns = [normalise_path(p) for p in self.config.src]
        paths = sorted(
            row.path
            for row in source.files()
            if any(fnmatch.fnmatchcase(row.path, p) for p in patterns)
        )
        return [
            (p, source.file_bytes(p).decode("utf-8", "replace")[:MAX_DOCUMENT_CHARS]) for p in paths
        ]

    async def _embed(self, client: openai.AsyncOpenAI, texts: list[str]) -> list[list[float]]:
        import openai

        try:
            answer = await client.embeddings.create(model=self.model, input=texts)
        except openai.APIError as exc:
            raise ToolFailed(f"the embeddings could not be computed: {exc}") from None
        return [item.embedding for item in sorted(answer.data, key=lambda d: d.index)]

    async def _index(self, embed: Embed) -> Index:
        source = self.connections.source
        key = (
            source.workspace.id,
            source.revision_id,
            tuple(self.config.src),
            self.model,
            self.config.api_url,
        )
        with _lock:
            found = _indexes.get(key)
        if found is not None:
            return found
        documents = self._documents()
        vectors = await embed([text for _, text in documents]) if documents else []
        index = [(p, t, v) for (p, t), v in zip(documents, vectors, strict=True)]
        with _lock:
            _indexes[key] = index
            while len(_indexes) > _KEPT:
                _indexes.popitem(last=False)
        return index

    async def call(self, arguments: dict[str, Any]) -> ToolOutcome:
        query = arguments.get("query")
        if not isinstance(query, str) or not query.strip():
            raise ToolFailed("the arguments must hold 'query': what to look for, as a string")
        if self.model == LOCAL_MODEL:  # shipped in the wheel: nothing to reach
            index = await self._index(_local_embed)
            if not index:
                return ToolOutcome("No documents match the tool's src.", {"documents": []})
            (wanted,) = await _local_embed([query])
        else:
            client = self._client()

            async def embed(texts: list[str]) -> list[list[float]]:
                return await self._embed(client, texts)

            try:
                index = await self._index(embed)
                if not index:
                    return ToolOutcome("No documents match the tool's src.", {"documents": []})
                (wanted,) = await embed([query])
            finally:
                await client.close()
        ranked = sorted(index, key=lambda item: _cosine(wanted, item[2]), reverse=True)
        top = ranked[: self.config.top_k or DEFAULT_TOP_K]
        text = "\n\n".join(f"-- {path}\n{body}" for path, body, _ in top)
        return ToolOutcome(
            text[: self.limits.chars_shown], {"documents": [path for path, _, _ in top]}
        )
