"""``alto-stream gate``: the priority proxy, over real HTTP in-process.

The upstream is a stand-in for ``llama_cpp.server``: one request at a time,
in arrival order, no priority. No assertion depends on timing: the upstream
holds its answers until the test opens it, and the test waits for the gate's
own counts before it goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from alto_stream.components.llm import Sampling
from alto_stream.components.llm.base import Request
from alto_stream.components.llm.gate_server import GateConfig, PriorityProxy
from alto_stream.components.llm.openai_http import OpenAILLM


class FifoServer:
    """One request at a time, first come first served; answers held until :attr:`open`."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.open = asyncio.Event()
        self.running = 0
        self.closed_early = 0
        self.status = 200
        self._lock = asyncio.Lock()
        self.app = Starlette(
            routes=[
                Route("/v1/completions", self._complete, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    async def _models(self, request: HttpRequest) -> Response:
        return JSONResponse({"data": [{"id": "fifo"}]})

    async def _complete(self, request: HttpRequest) -> Response:
        body = await request.json()
        if self.status != 200:
            return JSONResponse(
                {"error": "busy"}, status_code=self.status, headers={"Retry-After": "1"}
            )
        await self._lock.acquire()
        self.seen.append(body)
        self.running += 1
        return StreamingResponse(self._events(body), media_type="text/event-stream")

    async def _events(self, body: dict[str, Any]) -> AsyncIterator[str]:
        finished = False
        try:
            yield _data({"choices": [{"text": f"{body['prompt']}:", "finish_reason": None}]})
            await self.open.wait()
            yield _data({"choices": [{"text": " done.", "finish_reason": "stop"}]})
            yield "data: [DONE]\n\n"
            finished = True
        finally:
            self.closed_early += not finished
            self.running -= 1
            self._lock.release()


def _data(event: dict[str, Any]) -> str:
    return f"data: {json.dumps(event)}\n\n"


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """``app`` on a free local port for the body of the ``async with``: its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await _until(lambda: server.started or task.done())
        if task.done():
            task.result()
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def gated(slots: int = 1) -> AsyncIterator[tuple[FifoServer, PriorityProxy, str]]:
    """A FIFO server behind a gate: the server, the gate, and the gate's base URL."""
    upstream = FifoServer()
    async with serving(upstream.app) as server_url:
        proxy = PriorityProxy(GateConfig(f"{server_url}/v1", slots=slots))
        async with serving(proxy.app) as gate_url:
            yield upstream, proxy, f"{gate_url}/v1"


async def _until(condition: Callable[[], bool]) -> None:
    """Poll state that another task changes (nothing to wait on); pytest-timeout bounds it."""
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.002)


async def _cancel(task: asyncio.Task[str]) -> None:
    """Cancel ``task`` (a client that leaves) and wait until it has."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _ask(client: httpx.AsyncClient, url: str, prompt: str, priority: int | None) -> str:
    body: dict[str, Any] = {"prompt": prompt, "stream": True}
    if priority is not None:
        body["priority"] = priority
    text = ""
    async with client.stream("POST", f"{url}/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                text += json.loads(line[6:])["choices"][0]["text"]
    return text


@pytest.mark.timeout(30)
async def test_the_waiting_request_with_the_lowest_priority_goes_next() -> None:
    async with gated() as (upstream, proxy, url), httpx.AsyncClient(timeout=20) as client:
        calls = [asyncio.create_task(_ask(client, url, "first", 50))]
        await _until(lambda: upstream.running == 1)
        # Arrival order young, old, none, middle: the FIFO server alone would keep it.
        for n, (prompt, priority) in enumerate(
            [("young", 30), ("old", 10), ("none", None), ("middle", 20)], start=1
        ):
            calls.append(asyncio.create_task(_ask(client, url, prompt, priority)))
            await _until(lambda n=n: proxy.gate.waiting == n)
        assert upstream.running == 1  # the gate holds them, not the server
        upstream.open.set()
        texts = await asyncio.gather(*calls)
    assert [body["prompt"] for body in upstream.seen] == ["first", "old", "middle", "young", "none"]
    assert texts[0] == "first: done."
    assert all("priority" not in body for body in upstream.seen)  # taken out before forwarding
    assert proxy.stats()["served"] == 5
    assert proxy.stats()["waiting"] == proxy.stats()["running"] == 0


@pytest.mark.timeout(30)
async def test_a_client_that_leaves_while_waiting_is_dropped_and_frees_nothing() -> None:
    async with gated() as (upstream, proxy, url), httpx.AsyncClient(timeout=20) as client:
        first = asyncio.create_task(_ask(client, url, "first", 5))
        await _until(lambda: upstream.running == 1)
        leaver = asyncio.create_task(_ask(client, url, "leaver", 1))
        await _until(lambda: proxy.gate.waiting == 1)
        await _cancel(leaver)
        await _until(lambda: proxy.gate.waiting == 0)
        stays = asyncio.create_task(_ask(client, url, "stays", 9))
        await _until(lambda: proxy.gate.waiting == 1)
        upstream.open.set()
        assert await first == "first: done."
        assert await stays == "stays: done."
        metrics = (await client.get(url.removesuffix("/v1") + "/metrics")).text
    assert [body["prompt"] for body in upstream.seen] == ["first", "stays"]
    assert 'alto_gate_requests_total{outcome="gone"} 1.0' in metrics
    assert proxy.gate.holders == 0


@pytest.mark.timeout(30)
async def test_a_client_that_leaves_mid_answer_frees_the_slot_for_the_next() -> None:
    async with gated() as (upstream, proxy, url), httpx.AsyncClient(timeout=20) as client:
        first = asyncio.create_task(_ask(client, url, "first", 1))
        await _until(lambda: upstream.running == 1)
        second = asyncio.create_task(_ask(client, url, "second", 2))
        await _until(lambda: proxy.gate.waiting == 1)
        await _cancel(first)  # mid-answer: the server's stream is closed, the slot handed on
        await _until(lambda: len(upstream.seen) == 2)
        upstream.open.set()
        assert await second == "second: done."
    assert upstream.closed_early == 1
    assert proxy.gate.holders == 0


@pytest.mark.timeout(30)
async def test_the_servers_refusal_and_a_dead_server_come_back_and_free_the_slot() -> None:
    async with gated() as (upstream, proxy, url), httpx.AsyncClient(timeout=20) as client:
        upstream.status = 503
        refused = await client.post(f"{url}/completions", json={"prompt": "x", "priority": 1})
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"  # the client's back-off honours it
        models = await client.get(f"{url}/models")  # GETs pass through, ungated
        assert models.json() == {"data": [{"id": "fifo"}]}
        assert proxy.gate.holders == 0
    dead = PriorityProxy(GateConfig(f"http://127.0.0.1:{_free_port()}/v1"))
    async with serving(dead.app) as gate_url, httpx.AsyncClient(timeout=20) as client:
        failed = await client.post(f"{gate_url}/v1/completions", json={"prompt": "x"})
    assert failed.status_code == 502
    assert "failed" in failed.json()["error"]["message"]
    assert dead.gate.holders == 0


@pytest.mark.timeout(30)
async def test_the_openai_backend_streams_whole_answers_through_the_gate() -> None:
    async with gated() as (upstream, _, url):
        llm = OpenAILLM(url=url, model="fifo", priority=True)
        upstream.open.set()
        try:
            deltas = [
                delta
                async for delta in llm.stream(
                    "q", Sampling(max_tokens=5), request=Request("r", priority=7)
                )
            ]
        finally:
            await llm.close()
    assert "".join(deltas) == "q: done."


def test_a_gate_needs_a_slot_and_an_http_url() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        GateConfig("http://127.0.0.1:1/v1", slots=0)
    with pytest.raises(ValueError, match="http"):
        GateConfig("127.0.0.1:8080")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_gate_command_refuses_a_bad_url_and_a_taken_port_in_one_line() -> None:
    from typer.testing import CliRunner

    from alto_stream.cli import app as cli

    bad = CliRunner().invoke(cli, ["gate", "127.0.0.1:8080"])
    assert bad.exit_code == 2  # bad usage
    assert "http(s) URL" in bad.output and "fix:" in bad.output
    assert "Traceback" not in bad.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = CliRunner().invoke(cli, ["gate", "http://127.0.0.1:1/v1", "--port", port])
    assert busy.exit_code == 2
    assert f"cannot serve on 127.0.0.1:{port}" in busy.output


@pytest.mark.timeout(30)
async def test_the_gate_keeps_the_upstream_urls_path() -> None:
    from starlette.routing import Mount

    upstream = FifoServer()
    upstream.open.set()
    mounted = Starlette(routes=[Mount("/serving/openai", app=upstream.app)])
    async with serving(mounted) as server_url:
        proxy = PriorityProxy(GateConfig(f"{server_url}/serving/openai/v1/"))
        async with serving(proxy.app) as gate_url, httpx.AsyncClient(timeout=20) as client:
            models = await client.get(f"{gate_url}/v1/models")
            text = await _ask(client, f"{gate_url}/v1", "mounted", 1)
    assert models.json() == {"data": [{"id": "fifo"}]}
    assert text == "mounted: done."
