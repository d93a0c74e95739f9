"""An EMULATED GPU serving engine: an OpenAI-compatible streaming server with no model.

It stands in for ``vllm serve`` on a machine without a GPU, so that alto-stream and
LangGraph can be measured against the same engine under load. It speaks the same
protocol (``POST /v1/completions`` and ``/v1/chat/completions``, streamed as
server-sent events ending with ``data: [DONE]``, or not streamed; ``GET /v1/models``)
and emulates a continuous-batching engine's timing:

- at most ``capacity`` requests run at once; the others wait in a queue ordered by
  (``priority``, arrival): vLLM's ``priority`` field, lower first, 0 when absent (so
  requests without it are served first come, first served). A running request is never
  preempted (vLLM's priority policy may preempt; this engine does not). With ``fifo``
  the field is ignored and requests run in arrival order, as ``llama_cpp.server``,
  Ollama and other small servers do (with ``capacity`` 1: ``llama_cpp.server``'s
  one request at a time);
- a running request's first token comes ``first_token + prompt_tokens / prefill_rate``
  seconds after it is admitted (prefill); each next one ``itl(n)`` seconds after the
  previous, with n the number of requests running at that moment::

      itl(n) = 1 / token_rate * (1 + slowdown * (n - 1) / capacity)

  (a batch of n decodes more slowly per sequence than a batch of one, as continuous
  batching does; at n = capacity the inter-token latency is about 1 + slowdown times
  the single-request one).

Defaults (assumptions, loosely those of vLLM serving a 7-8B model in bf16 on one
A100/H100-class GPU with short prompts): ``token_rate`` 60 tokens/s for one request
(~17 ms per token), ``slowdown`` 1.0 (about 2x slower per sequence at a full batch),
``first_token`` 0.05 s plus prefill at 10,000 prompt tokens/s (prompt tokens = chars/4),
``capacity`` 32 running requests. They are not measurements of any GPU.

The text is deterministic: a function of ``--seed``, the request's ``seed`` and the
prompt; readable words in sentences ending with a full stop. An answer ends, as a model's
does, after a number of sentences drawn from ``sentences`` (2-6; a list: ``items``, 2-4,
one sentence an item), or at the last whole sentence that fits in ``max_tokens``
(``finish_reason`` "stop"); a first sentence longer than ``max_tokens`` is cut there
("length"); ``stop`` strings cut it. One token is
one word. The prompt's end shapes the text (a dashed list, questions, a leading
``True.``/``False.`` after ``Verdict:``: see ``_shape``) so that the apps' parsers of a
real model's few-shot output read it. Every response says it is emulated: the model name, an
``X-Emulated-Engine`` header, ``/stats`` and ``/metrics``.

Run: ``python -m benchmarks.engine --port 8000 [--capacity 32 ...]`` (``__main__.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import json
import random
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["MODEL", "EmulatedEngine", "EngineConfig", "Scheduler", "answer_tokens"]


MODEL = "emulated-gpu-engine"
HEADERS = {"X-Emulated-Engine": "true"}
_DETERMINERS = ("the", "a", "every", "each", "one")
_ADJECTIVES = ("quiet", "bright", "cold", "warm", "old", "slow", "tall", "small", "distant")
_NOUNS = (
    "river",
    "valley",
    "sun",
    "moon",
    "sea",
    "farmer",
    "bee",
    "flower",
    "wind",
    "season",
    "scientist",
    "child",
    "cloud",
    "mountain",
    "city",
    "question",
    "answer",
    "storm",
)
_VERBS = (
    "carries",
    "warms",
    "follows",
    "reaches",
    "changes",
    "feeds",
    "shapes",
    "crosses",
    "measures",
    "explains",
    "remembers",
    "finds",
)
_PREPOSITIONS = ("across", "near", "beyond", "through", "under", "before", "after")


@dataclass(frozen=True)
class EngineConfig:
    """The emulated engine's timing and capacity (see the module docstring for the model)."""

    capacity: int = 32
    first_token: float = 0.05
    token_rate: float = 60.0
    slowdown: float = 1.0
    prefill_rate: float = 10_000.0
    max_queue: int = 0  # 0: unbounded; otherwise HTTP 429 when this many wait
    default_max_tokens: int = 128
    sentences: tuple[int, int] = (2, 6)  # an answer's sentences, drawn uniformly
    items: tuple[int, int] = (2, 4)  # a list's items
    seed: int = 0
    model: str = MODEL
    fifo: bool = False  # ignore ``priority``: arrival order (llama_cpp.server, Ollama)

    def __post_init__(self) -> None:
        """Refuse settings no engine has (each would fail every request, or worse, later)."""
        for name, least in (("capacity", 1), ("default_max_tokens", 1), ("max_queue", 0)):
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be >= {least}, got {getattr(self, name)}")
        for name in ("token_rate", "prefill_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("first_token", "slowdown"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def inter_token(self, running: int) -> float:
        """Seconds between two tokens of one request while ``running`` requests run."""
        return (1.0 + self.slowdown * max(running - 1, 0) / self.capacity) / self.token_rate

    def prefill(self, prompt: str) -> float:
        """Seconds from admission to the first token."""
        return self.first_token + (len(prompt) / 4) / self.prefill_rate


def answer_tokens(
    prompt: str,
    max_tokens: int,
    *,
    seed: int = 0,
    stop: tuple[str, ...] = (),
    sentences: tuple[int, int] = (2, 6),
    items: tuple[int, int] = (2, 4),
) -> tuple[list[str], str]:
    """The tokens of the answer to ``prompt`` and its finish reason ("stop" or "length").

    At most a number of sentences drawn from ``sentences`` (or list items from ``items``).
    """
    digest = hashlib.sha256(f"{seed}\0{prompt}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    listing, asking, verdict = _shape(prompt)
    tokens: list[str] = [rng.choice(("True.", "False."))] if verdict else []
    starts: set[int] = set()  # where a list item begins
    reason = "stop"
    wanted = rng.randint(*(items if listing else sentences))
    for _ in range(wanted):
        sentence = _sentence(rng)
        if asking:
            sentence[-1] = sentence[-1][:-1] + "?"
        if len(tokens) + len(sentence) > max_tokens:
            if not tokens:
                tokens, reason = sentence[:max_tokens], "length"
            break
        if listing and tokens:
            starts.add(len(tokens))
        tokens.extend(sentence)
    tokens = [w if i == 0 else ("\n- " if i in starts else " ") + w for i, w in enumerate(tokens)]
    return _cut_at_stop(tokens, stop, reason)


def _shape(prompt: str) -> tuple[bool, bool, bool]:
    """(a list, of questions, a verdict): the answer's shape, from how the prompt ends.

    A few-shot prompt ending with a list's first dash (``Sub-questions:\n-``) gets one
    sentence per line (``\n- ``), questions where the list's label says so; one ending
    with ``Verdict:`` starts with ``True.`` or ``False.``; so that the apps' parsers read
    the emulated text as they read a model's.
    """
    end = prompt.rstrip(" ")
    listing = end.endswith("\n-")
    label = end[:-2].rsplit("\n", 1)[-1].lower() if listing else ""
    return listing, listing and "questions" in label, end.endswith("Verdict:")


def _sentence(rng: random.Random) -> list[str]:
    """A short sentence of words: subject, verb, object, perhaps a place; a full stop."""

    def phrase() -> list[str]:
        words = [rng.choice(_DETERMINERS)]
        if rng.random() < 0.6:
            words.append(rng.choice(_ADJECTIVES))
        return [*words, rng.choice(_NOUNS)]

    words = [*phrase(), rng.choice(_VERBS), *phrase()]
    if rng.random() < 0.5:
        words += [rng.choice(_PREPOSITIONS), *phrase()]
    words[0] = words[0].capitalize()
    words[-1] += "."
    return words


def _cut_at_stop(tokens: list[str], stop: tuple[str, ...], reason: str) -> tuple[list[str], str]:
    text = "".join(tokens)
    cuts = [text.find(s) for s in stop if s and s in text]
    if not cuts:
        return tokens, reason
    end, kept, length = min(cuts), [], 0
    for token in tokens:
        if length + len(token) >= end:
            if end > length:
                kept.append(token[: end - length])
            break
        kept.append(token)
        length += len(token)
    return kept, "stop"


@dataclass(order=True)
class _Waiter:
    priority: int
    seq: int
    future: asyncio.Future[None] = field(compare=False)


class Scheduler:
    """At most ``capacity`` running; the rest wait, lowest (priority, arrival) first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.running = 0
        self._queue: list[_Waiter] = []
        self._seq = itertools.count()
        self.admitted: deque[str] = deque(maxlen=10_000)  # request ids, in admission order

    @property
    def queued(self) -> int:
        """Requests waiting for a slot."""
        return sum(1 for w in self._queue if not w.future.done())

    @asynccontextmanager
    async def slot(self, priority: int = 0, request_id: str = "") -> AsyncIterator[None]:
        """Hold one of the ``capacity`` slots for the body of the ``async with``."""
        if self.running < self.capacity and not self.queued:
            self.running += 1
        else:
            waiter = _Waiter(priority, next(self._seq), asyncio.get_running_loop().create_future())
            heapq.heappush(self._queue, waiter)
            try:
                await waiter.future  # the slot is handed over by _release (running unchanged)
            except asyncio.CancelledError:
                if waiter.future.done() and not waiter.future.cancelled():
                    self._release()  # granted, then cancelled before it ran
                raise
        self.admitted.append(request_id)
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._queue:
            waiter = heapq.heappop(self._queue)
            if not waiter.future.done():
                waiter.future.set_result(None)  # hand the slot over
                return
        self.running -= 1


class EmulatedEngine:
    """The scheduler, the counters and the Starlette app that serves them."""

    def __init__(self, config: EngineConfig | None = None, *, sleep: Any = asyncio.sleep) -> None:
        self.config = config or EngineConfig()
        self.scheduler = Scheduler(self.config.capacity)
        self.sleep = sleep  # a test double may hold the clock
        self.served = 0
        self.rejected = 0
        self.tokens = 0
        self._ids = itertools.count()
        self.app = Starlette(
            routes=[
                Route("/v1/completions", self._completions, methods=["POST"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/stats", self._stats, methods=["GET"]),
                Route("/metrics", self._metrics, methods=["GET"]),
            ]
        )

    def stats(self) -> dict[str, Any]:
        """Running, queued, served and rejected requests, tokens sent, and the config."""
        return {
            "engine": "emulated (no model, no GPU)",
            "running": self.scheduler.running,
            "queued": self.scheduler.queued,
            "served": self.served,
            "rejected": self.rejected,
            "tokens": self.tokens,
            "config": asdict(self.config),
        }

    async def _stats(self, request: Request) -> Response:
        return JSONResponse(self.stats(), headers=HEADERS)

    async def _metrics(self, request: Request) -> Response:
        stats = self.stats()
        lines = ["# emulated GPU serving engine (no model, no GPU)"]
        for name in ("running", "queued", "served", "rejected", "tokens"):
            lines.append(f'emulated_engine_{name}{{model="{self.config.model}"}} {stats[name]}')
        return PlainTextResponse("\n".join(lines) + "\n", headers=HEADERS)

    async def _models(self, request: Request) -> Response:
        card = {"id": self.config.model, "object": "model", "owned_by": "emulated"}
        return JSONResponse({"object": "list", "data": [card]}, headers=HEADERS)

    async def _completions(self, request: Request) -> Response:
        return await self._serve(request, chat=False)

    async def _chat(self, request: Request) -> Response:
        return await self._serve(request, chat=True)

    async def _serve(self, request: Request, *, chat: bool) -> Response:
        try:
            body = await request.json()
            prompt = _prompt_text(body, chat=chat)
            max_tokens = int(body.get("max_tokens") or self.config.default_max_tokens)
            priority = 0 if self.config.fifo else int(body.get("priority") or 0)
            stop = body.get("stop") or ()
            stop = (stop,) if isinstance(stop, str) else tuple(stop)
            if max_tokens < 1:
                raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return _error(400, f"bad request: {exc}")
        limit = self.config.max_queue
        if limit and self.scheduler.queued >= limit:
            self.rejected += 1
            return _error(429, f"the emulated engine's queue is full ({limit} waiting)")
        seed = self.config.seed * 1_000_003 + int(body.get("seed") or 0)
        tokens, reason = answer_tokens(
            prompt,
            max_tokens,
            seed=seed,
            stop=stop,
            sentences=self.config.sentences,
            items=self.config.items,
        )
        rid = request.headers.get("x-request-id") or f"emu-{next(self._ids)}"
        events = self._events(rid, prompt, tokens, reason, priority, chat=chat)
        if body.get("stream"):
            stream = _sse(self, rid, events, chat=chat)
            return StreamingResponse(stream, media_type="text/event-stream", headers=HEADERS)
        text = "".join([e async for e in events if isinstance(e, str)])
        choice: dict[str, Any] = {"index": 0, "finish_reason": reason}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice |= {"text": text, "logprobs": None}
        out = {
            "id": rid,
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": self.config.model,
            "choices": [choice],
            "usage": _usage(prompt, tokens),
        }
        return JSONResponse(out, headers=HEADERS)

    async def _events(
        self, rid: str, prompt: str, tokens: list[str], reason: str, priority: int, *, chat: bool
    ) -> AsyncIterator[str | dict[str, Any]]:
        """The tokens as they are generated (str), then the final chunk (dict)."""
        async with self.scheduler.slot(priority, rid):
            loop = asyncio.get_running_loop()
            due = loop.time() + self.config.prefill(prompt)
            for token in tokens:
                await self.sleep(max(due - loop.time(), 0.0))
                self.tokens += 1
                yield token
                due = max(due, loop.time()) + self.config.inter_token(self.scheduler.running)
        self.served += 1
        yield {"id": rid, "reason": reason, "chat": chat, "usage": _usage(prompt, tokens)}

    def chunk(
        self, rid: str, text: str | None, reason: str | None, *, chat: bool, role: bool = False
    ) -> dict[str, Any]:
        """One streamed event, in the shape vLLM and OpenAI send."""
        choice: dict[str, Any] = {"index": 0, "finish_reason": reason}
        if chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
            choice["delta"] = delta if text is None else {"content": text}
        else:
            choice |= {"text": text or "", "logprobs": None}
        return {
            "id": rid,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": self.config.model,
            "choices": [choice],
        }


def _prompt_text(body: dict[str, Any], *, chat: bool) -> str:
    if chat:
        messages = body["messages"]
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages)
    prompt = body["prompt"]
    if isinstance(prompt, list):  # OpenAI allows a list of prompts: one choice here
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise TypeError("prompt must be a string")
    return prompt


def _usage(prompt: str, tokens: list[str]) -> dict[str, int]:
    prompt_tokens = max(1, len(prompt) // 4)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(tokens),
        "total_tokens": prompt_tokens + len(tokens),
    }


def _error(status: int, message: str) -> Response:
    body = {"error": {"message": message, "type": "emulated_engine_error", "code": status}}
    return JSONResponse(body, status_code=status, headers=HEADERS)


async def _sse(
    engine: EmulatedEngine, rid: str, events: AsyncIterator[str | dict[str, Any]], *, chat: bool
) -> AsyncIterator[str]:
    """Server-sent events: (for chat, the role first) a chunk per token, the finish, [DONE]."""
    if chat:
        yield _data(engine.chunk(rid, None, None, chat=True, role=True))
    async for event in events:
        if isinstance(event, str):
            yield _data(engine.chunk(rid, event, None, chat=chat))
        else:
            final = engine.chunk(rid, None, event["reason"], chat=chat)
            yield _data(final | {"usage": event["usage"]})
    yield "data: [DONE]\n\n"


def _data(event: dict[str, Any]) -> str:
    return f"data: {json.dumps(event)}\n\n"
