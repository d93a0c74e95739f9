"""The ``openai`` backend: streaming HTTP to any OpenAI-compatible server.

``vllm serve``, ``python -m llama_cpp.server`` and hosted APIs speak the same
protocol: a string prompt goes to ``/completions``, chat messages to
``/chat/completions``, both with ``stream: true`` (server-sent events). All
calls of a process share one httpx connection pool, so many requests are in
flight at once.

A call that fails before its first delta (HTTP 429 or 5xx, a refused or reset
connection, a timeout) is retried with exponential backoff and full jitter,
honouring ``Retry-After`` up to the request time-out; once text has been
streamed a failure is raised (a retry would repeat text), as a retriable
:class:`LLMError`, and so is a stream that ends without a ``finish_reason`` (a
cut answer must not pass for a whole one). A worker's check at start probes
the server once (``GET {url}/models``) and logs one warning if it cannot be
reached, answers HTTP 404 (a URL without ``/v1``), or takes the request without
answering in time (busy, not unreachable: calls wait for it). The API key comes
from an environment variable (``ALTO_LLM_API_KEY`` by default), read when the
pool opens; it is never printed, logged or shown in a repr.

With ``priority=True`` each request carries vLLM's ``priority`` field: the query's
arrival time in milliseconds (lower runs first), so that the oldest query's
calls go first across every stage and replica sharing the server (start vLLM
with ``--scheduling-policy priority``; other servers may reject the field).
``priority=None`` (the default) sends it when the app asks for it
(``App(priority=True)``, see docs/scheduling.md), and ``False`` never does.
With ``request_ids=True`` the record's request id goes in an ``X-Request-Id``
header (vLLM with ``--enable-request-id-headers`` uses it; llama_cpp.server
answers HTTP 400 to an id that is not a UUID, so it is off by default).

:class:`~alto_stream.components.llm.base.Sampling` means the same here as in
process: no repetition penalty. ``llama_cpp.server`` applies one unless told
(its request default ``repeat_penalty`` is 1.1, llama.cpp's own and vLLM's are
1.0), so a seeded prompt got other text from it than from the llama_cpp
backend. The probe of ``/models`` recognises it (its models are ``owned_by``
``me``) and each request to it then carries ``repeat_penalty: 1.0``; other
servers get no such field (hosted APIs refuse unknown fields, vLLM logs each).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from alto_stream.components.llm.base import (
    LLM,
    LLMError,
    LLMUnavailableError,
    Prompt,
    Request,
    Sampling,
)

__all__ = ["OpenAILLM"]

log = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class OpenAILLM(LLM):
    """A model behind an OpenAI-compatible HTTP server (see the module docstring)."""

    backend = "openai"

    def __init__(
        self,
        url: str | None,
        model: str | None = None,
        *,
        api_key_env: str = "ALTO_LLM_API_KEY",
        priority: bool | None = None,
        request_ids: bool = False,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        retries: int = 4,
        backoff: float = 0.5,
        max_connections: int = 64,
        sampling: Sampling | None = None,
    ) -> None:
        super().__init__(sampling=sampling)
        self.url = (url or "").rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.priority = priority
        self.request_ids = request_ids
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retries = retries
        self.backoff = backoff
        self.max_connections = max_connections
        self._client: Any = None
        self._transport: Any = None  # httpx's own; tests put a mock here
        self._probed = False
        self._llama_server: bool | None = None
        """Whether the server is llama_cpp.server (None: not known yet, no answer to the probe)."""

    @property
    def model_label(self) -> str:
        """The model name and the server URL (the URL carries no key)."""
        return f"{self.model or 'default'}@{self.url or '(no URL)'}"

    async def check(self) -> None:
        """A URL is set and httpx importable; the server is probed once (a warning at most).

        A worker checks its stage's models at start, before any record: a wrong
        ``ALTO_LLM_URL`` (nothing listening, or ``/v1`` left out) is then one
        warning there, not an error per query seconds later. It does not fail the
        start: the server may come up later.
        """
        import importlib.util

        if not self.url:
            raise LLMUnavailableError(
                "the openai backend needs the server's URL: set ALTO_LLM_URL "
                "(e.g. http://127.0.0.1:8000/v1) or pass url="
            )
        if importlib.util.find_spec("httpx") is None:
            raise LLMUnavailableError(
                "the openai backend needs httpx: `pip install 'alto-stream[openai]'`"
            )
        if not self._probed:
            self._probed = True
            await self._probe()

    async def _probe(self, *, warn: bool = True) -> None:
        """Learn which server answers ``GET {url}/models``; warn if none does or it says 404.

        A server that takes the request but does not answer in time is busy (a
        one-request server generating for another worker), not unreachable: the
        warning says so, and that calls will wait for it.
        """
        import httpx

        try:
            async with httpx.AsyncClient(
                headers=self._headers(), timeout=_PROBE_TIMEOUT, transport=self._transport
            ) as client:
                response = await client.get(f"{self.url}/models")
        except httpx.ReadTimeout:  # it took the request: there is a server, and it is busy
            if not warn:
                return
            log.warning(
                "%s: the LLM server at %s accepted the connection but did not answer "
                "GET /models within %g s: busy, e.g. a one-request server (llama_cpp.server) "
                "generating for another call; calls wait for it (up to %g s each)",
                self.name,
                self.url,
                _PROBE_TIMEOUT,
                self.timeout,
            )
            return
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            if not warn:
                return
            log.warning(
                "%s: the LLM server at %s is not reachable now (GET /models: %r); calls fail "
                "until it is: check ALTO_LLM_URL (it ends in /v1 for vllm serve and "
                "llama_cpp.server)",
                self.name,
                self.url,
                exc,
            )
            return
        self._llama_server = _is_llama_cpp_server(response)
        if response.status_code == 404 and warn:  # it answered: the URL's path is likely wrong
            log.warning(
                "%s: the LLM server at %s answered HTTP 404 to GET /models: calls may fail: "
                "check ALTO_LLM_URL (it ends in /v1 for vllm serve and llama_cpp.server)",
                self.name,
                self.url,
            )

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    async def _load(self) -> None:
        import httpx

        self._client = httpx.AsyncClient(
            base_url=self.url,
            headers=self._headers(),
            transport=self._transport,
            timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
            limits=httpx.Limits(
                max_connections=self.max_connections,
                max_keepalive_connections=self.max_connections,
            ),
        )

    async def _release(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def body(self, prompt: Prompt, sampling: Sampling, request: Request) -> dict[str, Any]:
        """The JSON body of one streaming request."""
        body: dict[str, Any] = {
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "stream": True,
        }
        if isinstance(prompt, str):
            body["prompt"] = prompt
        else:
            body["messages"] = [dict(m) for m in prompt]
        if self.model:
            body["model"] = self.model
        if sampling.top_k is not None:
            body["top_k"] = sampling.top_k
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if self._llama_server:
            body["repeat_penalty"] = 1.0  # none, as everywhere else (its default is 1.1)
        send = request.wants_priority if self.priority is None else self.priority
        if send and request.priority is not None:
            body["priority"] = request.priority
        return body

    async def _generate(
        self, prompt: Prompt, sampling: Sampling, request: Request
    ) -> AsyncGenerator[str, None]:
        import httpx

        client = self._client
        if client is None:
            raise LLMError("the openai backend was closed")
        if self._llama_server is None:  # the server was down at start: which one is it?
            await self._probe(warn=False)
        chat = not isinstance(prompt, str)
        path = "/chat/completions" if chat else "/completions"
        body = self.body(prompt, sampling, request)
        headers = {"X-Request-Id": request.request_id} if self.request_ids else None
        most = _most_chars(sampling.max_tokens)
        for attempt in range(self.retries + 1):
            streamed = 0
            try:
                async with client.stream("POST", path, json=body, headers=headers) as response:
                    if response.status_code != 200:
                        await self._refused(response, attempt, path)
                        continue
                    deltas = _sse_deltas(response, chat=chat, llama_server=self._llama_server)
                    async for delta in deltas:
                        streamed += len(delta)
                        if streamed > most:
                            raise LLMError(
                                f"{self.url}{path} sent more than {most:,} characters for "
                                f"max_tokens={sampling.max_tokens}: a server that ignores "
                                "max_tokens (the answer is cut here; a stream that never "
                                "ends would hold the record for ever)"
                            )
                        yield delta
                return
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                if streamed:
                    raise LLMError(
                        f"the stream from {self.url} broke after text was sent: {exc!r}",
                        retriable=True,
                    ) from exc
                if attempt == self.retries:
                    if isinstance(exc, httpx.ReadTimeout):  # it took the request
                        why = f"no answer within {self.timeout:g} s"
                    elif isinstance(exc, httpx.PoolTimeout):
                        why = f"no free connection of {self.max_connections} within the time-out"
                    else:
                        why = "unreachable"
                    raise LLMError(
                        f"{self.url}{path}: {why} after {attempt + 1} tries: {exc!r}",
                        retriable=True,
                    ) from exc
                await self._pause(attempt, None, repr(exc))

    async def _refused(self, response: Any, attempt: int, path: str) -> None:
        """Wait before the next try of a refused request, or raise when it is final."""
        text = (await response.aread()).decode(errors="replace")[:500]
        status = response.status_code
        if status not in _RETRY_STATUS or attempt == self.retries:
            hint = ""
            if status == 404:
                hint = (
                    "; fix: the URL is the API's root: OpenAI-compatible servers "
                    f"(vllm serve, llama_cpp.server) answer {path} under /v1, e.g. "
                    "ALTO_LLM_URL=http://HOST:PORT/v1"
                )
            said = f": {text}" if text.strip() else " with an empty body"
            raise LLMError(
                f"{self.url}{path} answered HTTP {status}{said}{hint}",
                retriable=status in _RETRY_STATUS,
            )
        await self._pause(attempt, response.headers.get("retry-after"), f"HTTP {status}")

    async def _pause(self, attempt: int, retry_after: str | None, why: str) -> None:
        delay = random.uniform(0, self.backoff * 2**attempt)  # full jitter
        if retry_after is not None:
            with contextlib.suppress(ValueError):  # an HTTP date: keep our own delay
                # At most one request's time-out: "inf" or a day would hold the record for ever.
                delay = max(delay, min(float(retry_after), self.timeout))
        log.warning(
            "%s: %s, retry %d/%d in %.2fs", self.name, why, attempt + 1, self.retries, delay
        )
        await asyncio.sleep(delay)


def _is_llama_cpp_server(response: Any) -> bool:
    """Whether a ``/models`` answer is llama_cpp.server's (its models are owned by ``me``)."""
    try:
        models = response.json().get("data") if response.status_code == 200 else None
    except (ValueError, AttributeError):  # not JSON, or not an object
        return False
    return isinstance(models, list) and any(
        isinstance(m, dict) and m.get("owned_by") == "me" for m in models
    )


_PROBE_TIMEOUT = 3.0
"""Seconds the start-up probe of the server waits (a worker's start waits for it)."""

_CHARS_PER_TOKEN = 64
"""The most characters a token is allowed on average before a stream counts as unending."""


def _most_chars(max_tokens: int) -> int:
    """The longest answer accepted for ``max_tokens``: far above any real tokenizer's."""
    return max(4096, _CHARS_PER_TOKEN * max_tokens)


async def _sse_deltas(
    response: Any, *, chat: bool, llama_server: bool | None = False
) -> AsyncIterator[str]:
    """The text deltas of a streamed completion (server-sent events, ``data: {...}`` lines).

    A whole answer ends with a choice's ``finish_reason`` (``stop``, ``length``...).
    One that ends without (``data: [DONE]`` alone, as ``llama_cpp.server`` sends when
    a new request interrupts a generation; a connection closed cleanly mid-answer; a
    proxy's error page; a server that ignored ``stream``) raises a retriable
    :class:`LLMError`: read as the whole answer, a cut or empty text would pass on as
    if complete.
    """
    finished = done = said = False
    async for line in response.aiter_lines():
        said = said or bool(line.strip())
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            done = True
            break
        try:
            event = json.loads(data)
        except json.JSONDecodeError as exc:
            raise LLMError(f"the server sent a malformed event: {data[:200]!r}") from exc
        if "error" in event:
            raise LLMError(f"the server reported an error mid-stream: {event['error']}")
        for choice in event.get("choices") or ():
            text = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
            if text and not isinstance(text, str):
                raise LLMError(f"the server sent a malformed event: {data[:200]!r}")
            if text:
                yield text
            finished = finished or choice.get("finish_reason") is not None
    if not said:
        # Not a byte, not even [DONE]: llama_cpp.server answers so (200, then nothing)
        # a prompt longer than its context window, which no retry mends. Before
        # 2026-12-03 this read as a cut stream: retried, with advice about a flag the
        # server already had.
        raise LLMError(
            "the server answered with an empty stream (no text, no end): llama_cpp.server "
            "does so for a prompt longer than its context window (its log says "
            "'exceed context window'); see the server's log"
        )
    if not finished:
        # The hint only where it fits: another server that cut its stream (a fake one, a
        # proxy) was told to restart llama_cpp.server with a flag it does not have. And
        # only where a [DONE] came: that is how an interrupted generation ends.
        hint = (
            " (llama_cpp.server cuts a generation so when another request arrives: "
            "start it with --interrupt_requests False)"
            if llama_server and done
            else ""
        )
        raise LLMError(
            "the server ended the stream without a finish_reason: the answer may be cut "
            f"short{hint}",
            retriable=True,
        )
