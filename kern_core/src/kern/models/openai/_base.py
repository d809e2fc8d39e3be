"""What both OpenAI model classes share: configuration, lazily built SDK clients, and
turning the SDK's errors into kern's.

The ``openai`` SDK is imported on first use (building a client, catching its errors), not
here: importing it costs about half a second, which ``from kern.models.openai import
OpenAIChat`` must not pay (see docs/benchmarks.md#cold-start).
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from kern.errors import ConfigurationError, ModelProviderError
from kern.models.base import Model

if TYPE_CHECKING:
    import openai

#: Sent as the key when a base_url is configured but no key is: local OpenAI-compatible
#: servers (Ollama, vLLM, llama.cpp) ignore it, and the SDK refuses to run without one.
PLACEHOLDER_API_KEY = "kern-no-key"

DEFAULT_BASE_URL = "https://api.openai.com/v1"

# client_params that configure authentication themselves: leave key resolution to the SDK.
_SDK_AUTH_PARAMS = ("provider", "workload_identity", "admin_api_key")


def new_call_id() -> str:
    """An id for a tool call a server sent without one (some local servers do)."""
    return f"call_{uuid.uuid4().hex[:24]}"


class OpenAIModelBase(Model):
    """Configuration and clients for a model served through the official ``openai`` SDK.

    ``base_url`` reaches any OpenAI-compatible server (Ollama, vLLM...). Without it the
    SDK's own environment variables apply (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``).
    ``client_params`` are passed to both ``openai.OpenAI`` and ``openai.AsyncOpenAI`` as
    they are (``default_headers``, ``organization``...); they override the other arguments.
    """

    def __init__(
        self,
        id: str = "gpt-4.1-mini",
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        client_params: dict[str, Any] | None = None,
    ) -> None:
        self.id = id
        self.base_url = base_url
        self.api_key = api_key
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.max_retries = max_retries
        self.client_params = dict(client_params or {})
        self._client: openai.OpenAI | None = None
        self._async_client: openai.AsyncOpenAI | None = None
        self._async_loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._client_lock = threading.Lock()

    # -- clients

    def resolved_base_url(self) -> str:
        """The URL requests go to: ``client_params["base_url"]``, the ``base_url``
        argument, ``OPENAI_BASE_URL``, or OpenAI's API, in that order."""
        return (
            self.client_params.get("base_url")
            or self.base_url
            or os.environ.get("OPENAI_BASE_URL")
            or DEFAULT_BASE_URL
        )

    def _client_kwargs(self) -> dict[str, Any]:
        params = dict(self.client_params)
        kwargs: dict[str, Any] = {}
        if self.timeout is not None:
            kwargs["timeout"] = self.timeout
        if self.max_retries is not None:
            kwargs["max_retries"] = self.max_retries
        if any(name in params for name in _SDK_AUTH_PARAMS):
            if self.base_url is not None:
                kwargs["base_url"] = self.base_url
            if self.api_key is not None:
                kwargs["api_key"] = self.api_key
            return {**kwargs, **params}

        base_url = (
            params.pop("base_url", None) or self.base_url or os.environ.get("OPENAI_BASE_URL")
        )
        api_key = params.pop("api_key", None) or self.api_key or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            if not base_url:
                raise ConfigurationError(
                    f"{type(self).__name__}(id={self.id!r}) has no OpenAI API key: set the "
                    "OPENAI_API_KEY environment variable (or pass api_key=...), or, for a "
                    "local OpenAI-compatible server, pass base_url= (or set OPENAI_BASE_URL), "
                    'e.g. base_url="http://localhost:11434/v1" for Ollama.'
                )
            api_key = PLACEHOLDER_API_KEY
        kwargs["api_key"] = api_key
        if base_url:
            kwargs["base_url"] = base_url
        return {**kwargs, **params}

    def get_client(self) -> openai.OpenAI:
        """The sync SDK client, built on first use and reused."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._build("OpenAI")
        return self._client

    def get_async_client(self) -> openai.AsyncOpenAI:
        """The async SDK client, built on first use and reused within one event loop.

        Its pooled connections belong to the loop that opened them, so a model used again
        under a new loop (a second ``asyncio.run``) gets a fresh client instead of failing
        with "Event loop is closed".
        """
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._client_lock:
            owner = self._async_loop() if self._async_loop is not None else None
            if self._async_client is None or (loop is not None and owner is not loop):
                self._async_client = self._build("AsyncOpenAI")
                self._async_loop = weakref.ref(loop) if loop is not None else None
            return self._async_client

    def _build(self, client: str) -> Any:
        """An SDK client of class ``openai.<client>``: the first use imports the SDK."""
        import openai

        try:
            return getattr(openai, client)(**self._client_kwargs())
        except openai.OpenAIError as exc:
            raise ConfigurationError(
                f"{type(self).__name__}(id={self.id!r}) could not configure the openai "
                f"client: {exc}"
            ) from exc

    # -- errors

    @contextmanager
    def _provider_errors(self) -> Iterator[None]:
        """Re-raise the SDK's request errors as ``ModelProviderError`` (original as cause)."""
        import openai  # the first use imports it; once a client exists, a dict lookup

        try:
            yield
        except openai.APITimeoutError as exc:
            raise ModelProviderError(
                f"the model server at {self.resolved_base_url()} did not answer in time "
                f"(model {self.id!r}): raise timeout= or check the server's load"
            ) from exc
        except openai.APIConnectionError as exc:
            raise ModelProviderError(
                f"could not connect to the model server at {self.resolved_base_url()} "
                f"(model {self.id!r}): check that the server is running and reachable, and "
                f"that base_url (or OPENAI_BASE_URL) is right. ({exc.message})"
            ) from exc
        except openai.APIStatusError as exc:
            raise ModelProviderError(self._status_message(exc)) from exc
        except openai.APIError as exc:
            raise ModelProviderError(
                f"the model server at {self.resolved_base_url()} failed the request for "
                f"model {self.id!r}: {exc.message}"
            ) from exc

    def _status_message(self, exc: openai.APIStatusError) -> str:
        body = exc.body
        detail = body.get("message") if isinstance(body, dict) else None
        if not isinstance(detail, str) or not detail:
            detail = exc.message
        detail = detail.rstrip(".")
        status = exc.status_code
        hint = ""
        if status == 401:
            hint = " Check the API key (OPENAI_API_KEY or api_key=)."
        elif status == 404:
            hint = " Check the model id and base_url."
        return (
            f"the model server at {self.resolved_base_url()} answered HTTP {status} to the "
            f"request for model {self.id!r}: {detail}.{hint}"
        )

    def _sampling_params(self) -> dict[str, Any]:
        return {} if self.temperature is None else {"temperature": self.temperature}
