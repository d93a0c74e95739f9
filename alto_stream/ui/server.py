"""The ASGI app of ``alto-stream ui``: the page, a JSON API and a server-sent event stream.

Routes:

- ``GET /``: the page (``static/index.html``; its script and style sheet under ``/static``);
- ``GET /api/graph``: the topology graph (:func:`~alto_stream.ui.graph.topology_graph`);
- ``GET /api/state?since=REV``: stage figures, and queries and dead letters changed after REV;
- ``GET /api/events``: the same as server-sent events (``state``), pushed as things change;
- ``GET /api/queries/{id}/waterfall``: one query's waterfall;
- ``POST /api/replay`` ``{"topic", "partition", "offset"}``: replay a dead letter;
- ``POST /api/push`` ``{"text"}`` or ``{"value": {...}}``: push a query.

Errors come back as ``{"error": message}`` with status 400 (bad request or
unknown id), 403 (a POST from another site's page), 413 (a body over
:data:`MAX_BODY` bytes) or 502 (Kafka failed). Served on a loopback address, the
app answers only requests that name a loopback host (``Host: localhost`` or
``127.0.0.1``): a page of another site that resolves its own name to
127.0.0.1 (DNS rebinding) is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import signal
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from alto_stream.codec import Codec
from alto_stream.errors import AltoError, ConfigError
from alto_stream.ops.queries import read_queries
from alto_stream.query_checks import too_deep
from alto_stream.ui.service import UiService

__all__ = ["MAX_BODY", "STATIC", "create_app", "serve"]

STATIC = Path(__file__).parent / "static"
"""The page's files: index.html, app.js, style.css."""

MAX_BODY = 4 * 1024 * 1024
"""The largest request body read (a query is at most 1,000,000 bytes, escapes aside)."""

Handler = Callable[[Request], Awaitable[Response]]


class _BodyTooLargeError(ConfigError):
    """A request body over :data:`MAX_BODY` bytes (answered 413)."""


def create_app(
    service: UiService, *, run_service: bool = True, tick: float = 0.5, loopback: bool = False
) -> ASGIApp:
    """The ASGI app serving ``service``; with ``run_service``, it runs the service's tasks too.

    ``tick``: how often (seconds) the event stream looks for changes. ``loopback``:
    answer only requests whose ``Host`` is a loopback address or ``localhost``
    (:func:`serve` sets it when the socket is bound to one).
    """

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(service.run()) if run_service else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def index(_: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def graph(_: Request) -> Response:
        return JSONResponse(service.graph())

    async def state(request: Request) -> Response:
        return JSONResponse(_state(service, _since(request)))

    async def events(request: Request) -> Response:
        return StreamingResponse(
            _events(service, request, tick),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def waterfall(request: Request) -> Response:
        return JSONResponse(await service.trace(request.path_params["query_id"]))

    async def replay(request: Request) -> Response:
        body = await _body(request)
        try:
            where = (str(body["topic"]), int(body["partition"]), int(body["offset"]))
        except (KeyError, TypeError, ValueError):
            raise ConfigError("expected {topic, partition, offset} of a dead letter") from None
        return JSONResponse(await service.replay(*where))

    async def push(request: Request) -> Response:
        body = await _body(request)
        text, value = body.get("text"), body.get("value")
        schema = service.topology.input_schema
        codec = Codec(service.topology.registry)
        if (text is None) == (value is None) or not (
            (isinstance(text, str) and text.strip()) or isinstance(value, dict)
        ):
            # The CLI's words (TEXT, --value, --file) mean nothing to a caller of the API.
            raise ConfigError(
                'expected {"text": "a non-empty string"} or {"value": {a JSON object of '
                f"{schema}}}}}, got {json.dumps(body)[:200]}"
            )
        texts = [text] if isinstance(text, str) else []
        raw = json.dumps(value) if value is not None else None
        try:
            query = read_queries(texts, raw, None, schema, codec)[0]
        except ConfigError as exc:
            said = str(exc).replace("--value", '"value"', 1)
            if said.startswith("text 1"):  # the CLI's first TEXT argument
                said = '"text"' + said.removeprefix("text 1")
            raise ConfigError(said) from exc
        return JSONResponse({"query_id": await service.push(query)})

    routes = [
        Route("/", _guarded(index)),
        Route("/api/graph", _guarded(graph)),
        Route("/api/state", _guarded(state)),
        Route("/api/events", events),
        Route("/api/queries/{query_id}/waterfall", _guarded(waterfall)),
        Route("/api/replay", _guarded(replay), methods=["POST"]),
        Route("/api/push", _guarded(push), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return _SameSite(Starlette(routes=routes, lifespan=lifespan), loopback=loopback)


class _SameSite:
    """Refuses what a page of another site could make a visitor's browser send.

    A POST whose ``Origin`` is not this server (403), and, with ``loopback``, any
    request that names another host than a loopback one (400): a name of the
    other site's that resolves to 127.0.0.1 (DNS rebinding) would otherwise make
    its page same-origin with this one.
    """

    def __init__(self, app: ASGIApp, *, loopback: bool) -> None:
        self.app = app
        self.loopback = loopback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._refusal(Headers(scope=scope), scope) if scope["type"] == "http" else None
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            await JSONResponse({"error": refusal[1]}, status_code=refusal[0])(scope, receive, send)

    def _refusal(self, headers: Headers, scope: Scope) -> tuple[int, str] | None:
        host, origin = headers.get("host", ""), headers.get("origin")
        if self.loopback and not _is_loopback(host):
            return (
                400,
                f"this view answers requests for localhost or 127.0.0.1, not for {host!r} "
                "(it listens on a loopback address; another name for it is how a page of "
                "another site would reach it); to serve other hosts, start it with --host",
            )
        posted = scope["method"] not in ("GET", "HEAD")
        if posted and origin not in (None, "null") and origin.partition("://")[2] != host:
            return (403, f"a request from the page of {origin} is refused")
        return None


def _is_loopback(host: str) -> bool:
    """Whether a ``Host`` header (port included) names a loopback address or localhost."""
    name = host[1:].partition("]")[0] if host.startswith("[") else host.partition(":")[0]
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def serve(service: UiService, sock: socket.socket) -> None:
    """Serve ``service`` on a bound socket until SIGINT or SIGTERM (uvicorn)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn's, less raising the signal again once the server has stopped (the
            # process then died of it: exit 143): a SIGTERM is a graceful stop, and the
            # command exits 0, as `worker` and `up` do.
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            stops = (signal.SIGINT, signal.SIGTERM)
            original = {sig: signal.signal(sig, self.handle_exit) for sig in stops}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    bound = sock.getsockname()[0]
    config = uvicorn.Config(
        create_app(service, loopback=ipaddress.ip_address(bound).is_loopback),
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = Server(config)
    exit_handler = server.handle_exit

    def handle_exit(sig: int, frame: Any) -> None:
        service.stopping = True  # open event streams end, so that the server can stop
        exit_handler(sig, frame)

    server.handle_exit = handle_exit  # type: ignore[method-assign]
    server.run(sockets=[sock])


def _guarded(handler: Handler) -> Handler:
    """``handler`` with alto-stream errors as JSON: 400 for bad requests, 502 for Kafka."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except _BodyTooLargeError as exc:
            return JSONResponse({"error": str(exc)}, status_code=413)
        except ConfigError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except AltoError as exc:
            return JSONResponse({"error": str(exc)}, status_code=502)

    return guarded


def _since(request: Request) -> int:
    raw = request.query_params.get("since", "0")
    return int(raw) if raw.isdigit() else 0


async def _body(request: Request) -> dict[str, Any]:
    # Only JSON: a browser sends that cross-origin only after a CORS preflight, which this
    # server does not grant, so another web site cannot make a visitor's page push or replay.
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise ConfigError("send the body as JSON (Content-Type: application/json)")
    raw = bytearray()
    async for chunk in request.stream():  # read no further than the limit
        raw += chunk
        if len(raw) > MAX_BODY:
            raise _BodyTooLargeError(
                f"the request body is over {MAX_BODY:,} bytes (a query is at most 1,000,000 bytes)"
            )
    try:
        body = json.loads(raw)
    except ValueError:
        raise ConfigError("the request body is not JSON") from None
    except RecursionError:  # arrays or objects nested ~1,000 deep: json.loads gives up
        raise too_deep("the request body") from None
    if not isinstance(body, dict):
        raise ConfigError("expected a JSON object")
    return body


def _state(service: UiService, since: int) -> dict[str, Any]:
    return {**service.changes(since), "stages": service.stages.to_dict()}


async def _events(service: UiService, request: Request, tick: float) -> AsyncIterator[str]:
    """``state`` events: the first with everything, then whenever something changed."""
    since = _since(request)
    shown: tuple[Any, ...] = ()
    quiet = 0.0
    while not service.stopping and not await request.is_disconnected():
        stages = service.stages.to_dict()
        seen = (
            service.revisions.last,
            service.followed,
            stages["time"],
            stages["metrics_time"],
            stages["stale"],
            stages["unreachable_since"],
        )
        if seen != shown:
            data = {**service.changes(since), "stages": stages}
            since, shown, quiet = data["rev"], seen, 0.0
            yield f"event: state\ndata: {json.dumps(data, default=str)}\n\n"
        elif quiet >= 15.0:  # a comment keeps proxies from closing an idle stream
            quiet = 0.0
            yield ": idle\n\n"
        await asyncio.sleep(tick)
        quiet += tick
