"""``alto-stream gate``: a priority gate in front of an OpenAI-compatible server.

vLLM schedules by the ``priority`` field that alto-stream's calls carry (the
query's arrival time), so that the oldest query's calls go first across every
stage and process sharing it. Servers that run a few requests at a time in
order of arrival (``llama_cpp.server`` runs one; Ollama, a small TGI) ignore
the field: under load a young query's first call, made while an old query's
last call was on its way, runs first and delays the old query, and the delay
cascades into every query after it.

The gate is an HTTP proxy that owns the server's slots. It forwards at most
``slots`` generation requests (``POST /v1/...``) at once, and when one ends
the waiting request with the lowest ``priority`` goes next (those without
one go last, ties in arrival order), whichever process or host sent it. The
answer streams back byte for byte, status and ``Retry-After`` included, so a
client's retries work as before. A request whose client leaves while it waits
is dropped; one that leaves mid-answer has its upstream request closed, which
frees the slot. ``GET`` requests (``/v1/models``) pass through without a wait.

The field is taken out of the body before forwarding (servers that do not
know it may refuse it) unless ``forward_priority``. The gate serves its
figures at ``/stats`` (JSON) and ``/metrics`` (Prometheus): requests waiting
and running, the wait, and how requests ended.

Point the apps at the gate and make them send the priority::

    alto-stream gate http://127.0.0.1:8080/v1 --slots 1 --port 8090
    ALTO_LLM_URL=http://127.0.0.1:8090/v1 ALTO_LLM_PRIORITY=1 alto-stream up workers.fanout:app

A client's request time-out (``ALTO_LLM_TIMEOUT``) counts the wait at the gate:
no byte comes back until the request has a slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from alto_stream.components.llm.gate import PriorityGate

__all__ = ["GateConfig", "PriorityProxy"]

log = logging.getLogger(__name__)

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)
"""Headers that belong to one connection, not to the request: never passed on."""


@dataclass(frozen=True)
class GateConfig:
    """What the gate forwards to and how."""

    upstream: str
    """The server's base URL, e.g. ``http://127.0.0.1:8080/v1``."""
    slots: int = 1
    """Generation requests forwarded at once (``llama_cpp.server``: 1)."""
    forward_priority: bool = False
    """Leave the ``priority`` field in the forwarded body (vLLM takes it; others may refuse it)."""
    timeout: float = 600.0
    """Seconds to wait for the server's next byte before the request fails (HTTP 504)."""

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError(f"a gate needs at least one slot, got {self.slots}")
        if not self.upstream.startswith(("http://", "https://")):
            raise ValueError(f"the upstream must be an http(s) URL, got {self.upstream!r}")


class _Figures:
    """The gate's Prometheus figures, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.waiting = Gauge(
            "alto_gate_waiting", "Requests waiting for a slot", registry=self.registry
        )
        self.running = Gauge("alto_gate_running", "Requests holding a slot", registry=self.registry)
        self.wait = Histogram(
            "alto_gate_wait_seconds",
            "Time from a request's arrival to its slot",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 20, 40, 80, 160),
            registry=self.registry,
        )
        self.ended = Counter(
            "alto_gate_requests",
            "Generation requests by how they ended: answered (any status the server gave), "
            "gone (the client left while waiting), failed (the server could not be reached)",
            ["outcome"],
            registry=self.registry,
        )


class PriorityProxy:
    """The gate's ASGI app (:attr:`app`); see the module docstring."""

    def __init__(self, config: GateConfig, *, transport: httpx.AsyncBaseTransport | None = None):
        self.config = config
        self.gate = PriorityGate(config.slots)
        self.figures = _Figures()
        self.served = 0
        self._base = config.upstream.rstrip("/")
        timeout = httpx.Timeout(10.0, read=config.timeout, write=config.timeout, pool=None)
        self._client = httpx.AsyncClient(
            timeout=timeout, transport=transport, limits=httpx.Limits(max_connections=None)
        )
        self.app = Starlette(
            routes=[
                Route("/stats", self._stats, methods=["GET"]),
                Route("/metrics", self._metrics, methods=["GET"]),
                Route("/v1/{path:path}", self._relay, methods=["GET", "POST"]),
            ],
            lifespan=self._lifespan,
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, _: Starlette) -> AsyncIterator[None]:
        log.info("gate: %d slot(s) in front of %s", self.config.slots, self.config.upstream)
        try:
            yield
        finally:
            await self._client.aclose()

    def stats(self) -> dict[str, Any]:
        """Requests waiting, running and answered, and the gate's settings."""
        return {
            "gate": "alto-stream priority gate",
            "upstream": self.config.upstream,
            "slots": self.config.slots,
            "waiting": self.gate.waiting,
            "running": self.gate.holders,
            "served": self.served,
        }

    async def _stats(self, request: Request) -> Response:
        return JSONResponse(self.stats())

    async def _metrics(self, request: Request) -> Response:
        self.figures.waiting.set(self.gate.waiting)
        self.figures.running.set(self.gate.holders)
        return Response(generate_latest(self.figures.registry), media_type="text/plain")

    async def _relay(self, request: Request) -> Response:
        body = await request.body()
        priority, body = _take_priority(body, keep=self.config.forward_priority)
        if request.method != "POST":
            return await self._forward(request, body, release=None)
        arrived = time.monotonic()
        if not await _acquire_unless_gone(self.gate, priority, request):
            self.figures.ended.labels("gone").inc()
            log.debug("a client left while waiting (priority %s)", priority)
            return Response(status_code=499)
        self.figures.wait.observe(time.monotonic() - arrived)
        release = _once(self._done)
        try:
            return await self._forward(request, body, release=release)
        except BaseException:
            release()  # cancelled (a shutdown) before the answer was handed over
            raise

    def _done(self) -> None:
        self.served += 1
        self.gate.release()

    async def _forward(
        self, request: Request, body: bytes, *, release: Callable[[], None] | None
    ) -> Response:
        url = f"{self._base}{request.url.path.removeprefix('/v1')}"  # /v1/x -> URL/x
        if request.url.query:
            url = f"{url}?{request.url.query}"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        outgoing = self._client.build_request(request.method, url, content=body, headers=headers)
        try:
            upstream = await self._client.send(outgoing, stream=True)
        except httpx.TimeoutException as exc:
            return self._failed(release, 504, f"the server at {self._base} did not answer: {exc!r}")
        except httpx.HTTPError as exc:
            return self._failed(release, 502, f"the server at {self._base} failed: {exc!r}")
        if release is not None:
            self.figures.ended.labels("answered").inc()
        back = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
        return _Relayed(upstream, back, release)

    def _failed(self, release: Callable[[], None] | None, status: int, message: str) -> Response:
        if release is not None:
            release()
            self.figures.ended.labels("failed").inc()
        log.warning("%s", message)
        return JSONResponse({"error": {"message": message, "code": status}}, status_code=status)


class _Relayed(StreamingResponse):
    """The server's answer streamed back; the slot is freed when the exchange ends, however."""

    def __init__(
        self,
        upstream: httpx.Response,
        headers: dict[str, str],
        release: Callable[[], None] | None,
    ) -> None:
        super().__init__(upstream.aiter_raw(), status_code=upstream.status_code, headers=headers)
        self._upstream = upstream
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                await self._upstream.aclose()
            finally:
                if self._release is not None:
                    self._release()


def _take_priority(body: bytes, *, keep: bool) -> tuple[float | None, bytes]:
    """The body's ``priority`` (None: none, or not a JSON object) and the body to forward."""
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        return None, body
    if not isinstance(parsed, dict) or "priority" not in parsed:
        return None, body
    value = parsed["priority"]
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if keep:
        return number, body
    del parsed["priority"]
    return number, json.dumps(parsed).encode()


async def _acquire_unless_gone(
    gate: PriorityGate, priority: float | None, request: Request
) -> bool:
    """Wait for a slot; False (and no slot held) if the client disconnects first."""
    turn = asyncio.ensure_future(gate.acquire(priority))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({turn, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not turn.done():
            turn.cancel()  # acquire hands on a slot granted as it is cancelled
    with contextlib.suppress(asyncio.CancelledError):
        await turn
    return turn.done() and not turn.cancelled()


async def _disconnected(request: Request) -> None:
    """Return when the client disconnects (the body has been read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _once(action: Callable[[], None]) -> Callable[[], None]:
    """``action``, run at most once however often the result is called."""
    done = False

    def run() -> None:
        nonlocal done
        if not done:
            done = True
            action()

    return run
