"""Embedders: text to vectors, for recall by meaning and near-duplicate detection.

An embedder has ``id``, ``dimensions`` and ``embed(texts) -> list[list[float]]``.
``OpenAIEmbedder`` uses the official openai SDK, so it reaches OpenAI or any compatible
server (Ollama, vLLM, kern's scripted test server) through ``base_url``;
``kern.learn.local.LocalEmbedder`` runs a small model offline (``kern-memory[local]``).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from kern.errors import ConfigurationError, ModelProviderError

if TYPE_CHECKING:
    import openai


@runtime_checkable
class Embedder(Protocol):
    """Text to vectors. ``id`` names the model (and its dimension, where it has several) so
    that vectors stored by one embedder are never compared with another's."""

    @property
    def id(self) -> str: ...

    @property
    def dimensions(self) -> int | None:
        """The length of its vectors, if known before the first call."""
        ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order."""
        ...


class OpenAIEmbedder:
    """Embeddings from ``/v1/embeddings`` through the openai SDK.

    ``base_url`` / ``api_key`` default to ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``; a local
    server needs no key. ``dimensions`` is sent when given (text-embedding-3 models).
    """

    def __init__(
        self,
        id: str = "text-embedding-3-small",
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        dimensions: int | None = None,
        batch_size: int = 256,
        client_params: dict[str, Any] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigurationError("batch_size must be at least 1")
        self.id = id
        self.base_url = base_url
        self.api_key = api_key
        self.dimensions = dimensions
        self.batch_size = batch_size
        self.client_params = dict(client_params or {})
        self._client: openai.OpenAI | None = None

    def _get_client(self) -> openai.OpenAI:
        if self._client is None:
            import openai  # imported on first use: kern.learn stays light to import

            from kern.models.openai._base import PLACEHOLDER_API_KEY

            base_url = self.base_url or os.environ.get("OPENAI_BASE_URL")
            api_key = self.api_key or os.environ.get("OPENAI_API_KEY")
            if not api_key:
                if not base_url:
                    raise ConfigurationError(
                        f"OpenAIEmbedder(id={self.id!r}) has no API key: set OPENAI_API_KEY "
                        "(or pass api_key=...), or pass base_url= for a local server."
                    )
                api_key = PLACEHOLDER_API_KEY
            kwargs: dict[str, Any] = {"api_key": api_key}
            if base_url:
                kwargs["base_url"] = base_url
            self._client = openai.OpenAI(**{**kwargs, **self.client_params})
        return self._client

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        import openai

        client = self._get_client()
        vectors: list[list[float]] = []
        extra: dict[str, Any] = {}
        if self.dimensions is not None:
            extra["dimensions"] = self.dimensions
        for start in range(0, len(texts), self.batch_size):
            batch = [text or " " for text in texts[start : start + self.batch_size]]
            try:
                response = client.embeddings.create(model=self.id, input=batch, **extra)
            except openai.APIError as exc:
                raise ModelProviderError(
                    f"embedding with {self.id!r} at {client.base_url} failed: {exc}"
                ) from exc
            vectors += [list(item.embedding) for item in sorted(response.data, key=_index)]
        return vectors

    def __repr__(self) -> str:
        return f"OpenAIEmbedder(id={self.id!r})"


def _index(item: Any) -> int:
    return int(item.index)


__all__ = ["Embedder", "OpenAIEmbedder"]


class CachedEmbedder:
    """An embedder that remembers its last ``size`` texts' vectors.

    A turn's recall embeds the same input once per store that ranks by meaning (memories,
    knowledge, entities): through this, the model is asked once. Same ``id`` and
    ``dimensions`` as the embedder it wraps, so stored vectors are the same."""

    def __init__(self, embedder: Embedder, size: int = 256) -> None:
        self.embedder = embedder
        self.size = size
        self._vectors: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        return self.embedder.id

    @property
    def dimensions(self) -> int | None:
        return self.embedder.dimensions

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        with self._lock:
            missing = [text for text in dict.fromkeys(texts) if text not in self._vectors]
        fresh = dict(zip(missing, self.embedder.embed(missing), strict=True)) if missing else {}
        with self._lock:
            self._vectors.update(fresh)
            found = [fresh.get(text) or self._vectors[text] for text in texts]
            for text in texts:
                self._vectors.move_to_end(text)
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)
        return found

    def __repr__(self) -> str:
        return f"CachedEmbedder({self.embedder!r})"
