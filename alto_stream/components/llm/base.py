"""The LLM interface every backend implements: a prompt in, an async stream of text deltas out.

A prompt is a string (completion style) or a list of chat messages
(``{"role": "user", "content": "..."}``). The same :class:`Sampling` settings
mean the same thing for every backend. A backend loads its model (or opens its
connection pool) on first use, once per process, and releases it on
:meth:`LLM.close`; :mod:`alto_stream.resources` lets a worker preload it and
closes it when the worker stops.

Inside a stage handler, each call takes its request id and priority from the
record being handled (:func:`alto_stream.context.current_record`): the record id
names the request, and the query's arrival time orders it where the backend
supports priority (vLLM), so that the oldest query's calls go first.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

from alto_stream.context import current_record
from alto_stream.errors import AltoError, ConfigError

__all__ = [
    "LLM",
    "LLMError",
    "LLMUnavailableError",
    "Message",
    "Prompt",
    "Request",
    "Sampling",
    "chat_sampling",
    "render_chat",
]

Message = Mapping[str, str]
"""A chat message: ``{"role": "system" | "user" | "assistant", "content": text}``."""

Prompt = str | Sequence[Message]
"""A completion-style prompt, or chat messages."""


class LLMError(AltoError):
    """A generation failed (``retriable`` says whether running the record again may help)."""

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class LLMUnavailableError(ConfigError):
    """The chosen backend cannot run here (a missing package, GPU, model file or server)."""


@dataclass(frozen=True)
class Sampling:
    """How to sample, the same for every backend.

    ``top_k`` of None leaves the backend's default (hosted OpenAI APIs reject it);
    ``seed`` of None samples differently on every call.
    """

    max_tokens: int = 256
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ConfigError(
                f"temperature must be >= 0 and top_p in (0, 1], got {self.temperature}, "
                f"{self.top_p}"
            )


_SEQUENCE = itertools.count()


@dataclass(frozen=True)
class Request:
    """Who a generation is for: its request id and its priority (lower goes first)."""

    request_id: str
    priority: int | None = None
    query_time: float | None = field(default=None, compare=False)
    wants_priority: bool = field(default=False, compare=False)
    """The app asked that this call carry its priority (``App(priority=True)``)."""

    @classmethod
    def current(cls) -> Request:
        """The request of the record being handled, or an anonymous one outside handlers.

        The id is the record's id plus a per-process sequence number (a handler may
        call the model more than once, and engines want distinct ids for requests
        in flight); the priority is the query's arrival time in milliseconds.
        """
        seq = next(_SEQUENCE)
        record = current_record()
        if record is None:
            return cls(f"alto-{os.getpid()}-{seq}")
        return cls(
            f"{record.record_id}-{seq}",
            priority=int(record.query_time * 1000),
            query_time=record.query_time,
            wants_priority=record.priority,
        )


def render_chat(messages: Sequence[Message]) -> str:
    """Chat messages as a completion prompt, for base models without a chat template.

    >>> render_chat([{"role": "system", "content": "Be brief."},
    ...              {"role": "user", "content": "Hi"}])
    'Be brief.\\n\\nUser: Hi\\nAssistant:'
    """
    parts: list[str] = []
    turns: list[str] = []
    for message in messages:
        role, content = message.get("role", "user"), message.get("content", "")
        if role == "system":
            parts.append(content.strip())
        else:
            turns.append(f"{'Assistant' if role == 'assistant' else 'User'}: {content.strip()}")
    turns.append("Assistant:")
    return "\n\n".join([*parts, "\n".join(turns)])


CHAT_STOP = ("\nUser:",)
"""Where a chat answer rendered by :func:`render_chat` ends: the next turn's start."""


def chat_sampling(sampling: Sampling) -> Sampling:
    """``sampling`` that also stops at the next turn of a :func:`render_chat` prompt.

    A base model continues the dialogue (``"\nUser: ..."``) on its own; the
    backends leave a stop string out of the text, so the answer ends before it.
    """
    extra = tuple(stop for stop in CHAT_STOP if stop not in sampling.stop)
    return dataclasses.replace(sampling, stop=(*sampling.stop, *extra)) if extra else sampling


class LLM(ABC):
    """A language model: :meth:`stream` text deltas, or :meth:`complete` in one call.

    Backends implement :meth:`_load`, :meth:`_generate` and :meth:`_release`;
    this class makes loading happen once (on first use, or from
    :meth:`start`), and fills in the request from the current record.
    """

    backend: str = "?"

    def __init__(self, *, sampling: Sampling | None = None) -> None:
        self.sampling = sampling or Sampling()
        self.seed: int | None = None
        """The seed of every call whose sampling has none (``ALTO_LLM_SEED``): the same
        prompt then gets the same text (benchmarks compare identical answers)."""
        self._started = False
        self._starting = asyncio.Lock()

    @property
    def name(self) -> str:
        """A label for logs: the backend and the model (never a secret)."""
        return f"llm[{self.backend}:{self.model_label}]"

    @property
    def model_label(self) -> str:
        """The model's name, for logs."""
        return "?"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} started={self._started}>"

    async def check(self) -> None:  # noqa: B027 - optional: most backends can always run
        """Fail with :class:`LLMUnavailableError` when this backend cannot run here."""

    async def start(self) -> None:
        """Load the model or open the connection pool (once; later calls return at once)."""
        if self._started:
            return
        async with self._starting:
            if not self._started:
                await self.check()
                await self._load()
                self._started = True

    async def close(self) -> None:
        """Release the model or the connections (the next call loads again)."""
        async with self._starting:
            if self._started:
                self._started = False
                await self._release()

    async def stream(
        self,
        prompt: Prompt,
        sampling: Sampling | None = None,
        *,
        request: Request | None = None,
    ) -> AsyncIterator[str]:
        """The generation's text, delta by delta, as the model produces it.

        Closing the iterator early, or cancelling the task that reads it, stops
        the generation (the backend frees its slot).
        """
        if not self._started:
            await self.start()
        request = request or Request.current()
        sampling = sampling or self.sampling
        if sampling.seed is None and self.seed is not None:
            sampling = dataclasses.replace(sampling, seed=self.seed)
        # aclosing: an abandoned stream stops its generation now, not when collected.
        async with contextlib.aclosing(self._generate(prompt, sampling, request)) as deltas:
            async for delta in deltas:
                if delta:
                    yield delta

    async def complete(
        self,
        prompt: Prompt,
        sampling: Sampling | None = None,
        *,
        request: Request | None = None,
    ) -> str:
        """The whole generated text, in one call."""
        return "".join([d async for d in self.stream(prompt, sampling, request=request)])

    @abstractmethod
    async def _load(self) -> None:
        """Load the model or open connections."""

    @abstractmethod
    def _generate(
        self, prompt: Prompt, sampling: Sampling, request: Request
    ) -> AsyncGenerator[str, None]:
        """Text deltas for one request; must stop its work when closed or cancelled."""

    @abstractmethod
    async def _release(self) -> None:
        """Release what :meth:`_load` took."""
