"""Text embeddings for routing agents: from the configured provider's
OpenAI-compatible embeddings endpoint, or locally from WordLlama, whose weights and
tokenizer ship inside its wheel (nothing is downloaded at run time).

Which one a routing agent uses is its ``embed_model``:

* ``wordllama`` (Quarry's): the local model (256 dimensions, ~16 MB, loaded once per
  process, a few ms per batch);
* the name of an OpenAI or Ollama entry of ``config.yml`` ``models:``: that entry's
  endpoint, key and ``model_ref``;
* anything else (Oxy's default ``text-embedding-3-small``): that model id at the
  routing agent's own model entry when it speaks the OpenAI protocol (OpenAI, Ollama,
  any ``api_url``), else at the OpenAI API with ``OPENAI_API_KEY``, as Oxy does.

Why WordLlama is loaded by hand: ``WordLlama.load(disable_download=True)`` looks for
the tokenizer under ``wordllama/tokenizer/`` while the wheel ships it under
``wordllama/tokenizers/``, so it either fails or downloads the tokenizer from Hugging
Face. The inference class is built from the two shipped files instead.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from quarry.agents.providers.base import ModelNotConfigured, shared_tls
from quarry.agents.providers.configured import resolve_secret
from quarry.core.errors import QuarryError
from quarry.definitions.models.config import OllamaModel, OpenAIModel, WorkspaceConfig
from quarry.runtime.connectors.secrets import SecretResolver

if TYPE_CHECKING:  # imported when embeddings are computed (slow to import)
    import openai

LOCAL_MODEL = "wordllama"
DEFAULT_MODEL = "text-embedding-3-small"  # Oxy's default embed_model
OPENAI_KEY_VAR = "OPENAI_API_KEY"
_WEIGHTS = ("weights", "l2_supercat_256.safetensors")
_TOKENIZER = ("tokenizers", "l2_supercat_tokenizer_config.json")


class EmbeddingFailed(QuarryError):
    status_code = 502
    code = "embedding_failed"


class Embedder(Protocol):
    identity: tuple[str, ...]
    """What the vectors depend on (cache key): the source and the model."""

    async def embed(self, texts: list[str]) -> list[list[float]]: ...

    async def close(self) -> None: ...


_local: Any = None
_local_lock = threading.Lock()


def local_model() -> Any:
    """The process's WordLlama model, built from the files inside the package."""
    global _local
    with _local_lock:
        if _local is None:
            import wordllama  # type: ignore[import-untyped]
            from safetensors import safe_open
            from tokenizers import Tokenizer
            from wordllama.inference import WordLlamaInference  # type: ignore[import-untyped]

            root = Path(wordllama.__file__).parent
            tokenizer = Tokenizer.from_file(str(root.joinpath(*_TOKENIZER)))
            with safe_open(str(root.joinpath(*_WEIGHTS)), framework="np", device="cpu") as f:
                weights = f.get_tensor("embedding.weight")
            _local = WordLlamaInference(weights, tokenizer, binary=False)
        return _local


class LocalEmbedder:
    identity: tuple[str, ...] = ("local", LOCAL_MODEL, _WEIGHTS[1])

    async def embed(self, texts: list[str]) -> list[list[float]]:
        def run() -> list[list[float]]:
            vectors = local_model().embed(texts)
            return [[float(x) for x in row] for row in vectors]

        return await asyncio.to_thread(run)

    async def close(self) -> None:
        return None


class OpenAIEmbedder:
    """An OpenAI-compatible ``/embeddings`` endpoint through the official SDK."""

    def __init__(
        self, model: str, key: str, api_url: str | None, dimensions: int | None = None
    ) -> None:
        import openai

        self.model = model
        self.dimensions = dimensions
        self.identity: tuple[str, ...] = ("openai", api_url or "", model, str(dimensions or ""))
        self._client: openai.AsyncOpenAI = openai.AsyncOpenAI(
            api_key=key,
            base_url=api_url,
            http_client=openai.DefaultAsyncHttpxClient(verify=shared_tls()),
        )

    async def embed(self, texts: list[str]) -> list[list[float]]:
        import openai

        extra: dict[str, Any] = {}
        if self.dimensions:
            extra["dimensions"] = self.dimensions
        try:
            answer = await self._client.embeddings.create(model=self.model, input=texts, **extra)
        except openai.APIError as exc:
            raise EmbeddingFailed(
                f"the embeddings of model {self.model!r} could not be computed: {exc}"
            ) from None
        return [item.embedding for item in sorted(answer.data, key=lambda d: d.index)]

    async def close(self) -> None:
        await self._client.close()


def make_embedder(
    config: WorkspaceConfig,
    embed_model: str | None,
    agent_model: str,
    secrets: SecretResolver,
    dimensions: int | None = None,
) -> Embedder:
    """The embedder a routing agent's ``embed_model`` names (see the module)."""
    wanted = embed_model or DEFAULT_MODEL
    if wanted == LOCAL_MODEL:
        return LocalEmbedder()
    entries = {m.name: m for m in config.models}
    named = entries.get(wanted)
    if named is not None:
        if isinstance(named, OpenAIModel):
            key = resolve_secret(secrets, wanted, "key_var", named.key_var)
            return OpenAIEmbedder(named.model_ref, key, named.api_url, dimensions)
        if isinstance(named, OllamaModel):
            return OpenAIEmbedder(named.model_ref, named.api_key, named.api_url, dimensions)
        raise ModelNotConfigured(
            f"embed_model {wanted!r} is a {named.vendor} model: embeddings need an OpenAI "
            f"or Ollama entry of config.yml, or {LOCAL_MODEL!r} (local)",
            model=wanted,
        )
    own = entries.get(agent_model)
    if isinstance(own, OpenAIModel) and own.azure_deployment_id is None:
        key = resolve_secret(secrets, own.name, "key_var", own.key_var)
        return OpenAIEmbedder(wanted, key, own.api_url, dimensions)
    if isinstance(own, OllamaModel):
        return OpenAIEmbedder(wanted, own.api_key, own.api_url, dimensions)
    key = resolve_secret(secrets, "embed_model", "key_var", OPENAI_KEY_VAR)
    return OpenAIEmbedder(wanted, key, None, dimensions)
