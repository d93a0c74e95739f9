"""LLM orchestration with doubles: threads and cancellation, HTTP retries and priority, config.

The real models are exercised in tests/e2e (llama.cpp, and the openai backend
against a local ``llama_cpp.server``); the vllm backend is in test_llm_vllm.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from alto_stream import resources
from alto_stream.ancestry import Ancestry
from alto_stream.components.llm import (
    LLMConfig,
    LLMError,
    LLMUnavailableError,
    Request,
    Sampling,
    create_llm,
    openai_http,
    render_chat,
    shared_llm,
)
from alto_stream.components.llm.llama_cpp import LlamaCppLLM
from alto_stream.components.llm.openai_http import OpenAILLM
from alto_stream.context import bind_record, current_record, unbind_record
from alto_stream.errors import ConfigError

pytestmark = pytest.mark.timeout(60)


class FakeLlama:
    """Stands in for llama_cpp.Llama: blocking token generation, like the real one."""

    def __init__(self, token_time: float = 0.02) -> None:
        self.token_time = token_time
        self.produced = 0
        self.calls: list[dict[str, Any]] = []
        self.closed = False

    def create_completion(self, prompt: str, **options: Any) -> Iterator[dict[str, Any]]:
        self.calls.append({"prompt": prompt, **options})
        for i in range(options["max_tokens"]):
            time.sleep(self.token_time)  # blocks, holding no event loop
            self.produced += 1
            yield {"choices": [{"text": f"w{i}. "}]}

    def close(self) -> None:
        self.closed = True


def _llama(fake: FakeLlama) -> LlamaCppLLM:
    llm = LlamaCppLLM(sampling=Sampling(max_tokens=5))
    llm._open = lambda: fake  # type: ignore[method-assign]

    async def ok() -> None:
        return None

    llm.check = ok  # type: ignore[method-assign]
    return llm


async def test_llama_cpp_streams_from_a_thread_without_blocking_the_loop() -> None:
    fake = FakeLlama(token_time=0.05)
    llm = _llama(fake)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    deltas = [d async for d in llm.stream("Q:", Sampling(max_tokens=10, seed=7))]
    task.cancel()
    assert deltas == [f"w{i}. " for i in range(10)]
    assert ticks >= 20  # 0.5 s of generation: the loop ran all along
    assert fake.calls[0]["seed"] == 7 and fake.calls[0]["stream"] is True
    assert fake.calls[0]["repeat_penalty"] == 1.0  # none, said: as llama_cpp.server is told
    assert await llm.complete("Q:") == "w0. w1. w2. w3. w4. "  # the default sampling
    await llm.close()
    assert fake.closed


async def test_llama_cpp_fresh_seed_per_call_when_none_given() -> None:
    fake = FakeLlama(token_time=0)
    llm = _llama(fake)
    await llm.complete("a")
    await llm.complete("a")
    assert fake.calls[0]["seed"] != fake.calls[1]["seed"]
    await llm.close()


async def test_llama_cpp_cancellation_stops_the_generation() -> None:
    fake = FakeLlama(token_time=0.02)
    llm = _llama(fake)

    async def read() -> None:
        async for _ in llm.stream("Q:", Sampling(max_tokens=10_000)):
            pass

    task = asyncio.create_task(read())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stopped_at = fake.produced
    await asyncio.sleep(0.3)
    assert fake.produced <= stopped_at + 1  # the thread stopped within a token
    assert stopped_at < 100
    # And the model is free for the next call.
    assert await asyncio.wait_for(llm.complete("Q:", Sampling(max_tokens=2)), 5) == "w0. w1. "
    await llm.close()


async def test_llama_cpp_closing_the_stream_early_stops_it() -> None:
    fake = FakeLlama(token_time=0.01)
    llm = _llama(fake)
    stream = llm.stream("Q:", Sampling(max_tokens=10_000))
    assert await anext(stream) == "w0. "
    await stream.aclose()  # type: ignore[attr-defined]
    produced = fake.produced
    await asyncio.sleep(0.2)
    assert fake.produced <= produced + 1
    await llm.close()


async def test_llama_cpp_errors_in_the_thread_reach_the_reader() -> None:
    class Broken(FakeLlama):
        def create_completion(self, prompt: str, **options: Any) -> Iterator[dict[str, Any]]:
            yield {"choices": [{"text": "a"}]}
            raise RuntimeError("llama_decode returned -1")

    llm = _llama(Broken())
    with pytest.raises(LLMError, match="llama_decode returned -1"):
        await llm.complete("Q:")
    await llm.close()


async def test_llama_cpp_check_reports_a_missing_file(tmp_path: Any) -> None:
    with pytest.raises(LLMUnavailableError, match=r"not found|llama-cpp-python"):
        await LlamaCppLLM(tmp_path / "missing.gguf").check()


async def test_model_loads_once_for_concurrent_first_calls() -> None:
    fake = FakeLlama(token_time=0)
    llm = _llama(fake)
    opened = 0

    def counting_open() -> FakeLlama:
        nonlocal opened
        opened += 1
        time.sleep(0.1)
        return fake

    llm._open = counting_open  # type: ignore[method-assign]
    results = await asyncio.gather(*(llm.complete(f"{i}") for i in range(5)))
    assert opened == 1 and len(results) == 5
    await llm.close()


# -- requests from the current record ------------------------------------------


def test_request_from_the_current_record() -> None:
    assert current_record() is None
    anonymous = Request.current()
    assert anonymous.priority is None
    ancestry = Ancestry.root("q-1", query_time=1_700_000_000.25).child("a", 3)
    token = bind_record(ancestry)
    try:
        record = current_record()
        assert record is not None and record.query_id == "q-1"
        first, second = Request.current(), Request.current()
    finally:
        unbind_record(token)
    assert first.request_id.startswith(ancestry.id) and first.request_id != second.request_id
    assert first.priority == 1_700_000_000_250  # older queries: lower, so first
    assert current_record() is None


def test_render_chat_for_base_models() -> None:
    text = render_chat(
        [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4."},
            {"role": "user", "content": "3+3?"},
        ]
    )
    assert text == "Answer briefly.\n\nUser: 2+2?\nAssistant: 4.\nUser: 3+3?\nAssistant:"


# -- the openai backend over a mock HTTP transport ------------------------------


def _sse(texts: list[str], *, chat: bool = False) -> bytes:
    lines = []
    for text in texts:
        choice = {"delta": {"content": text}} if chat else {"text": text}
        lines.append(f"data: {json.dumps({'choices': [choice]})}\n\n")
    finish = {"finish_reason": "stop"} | ({"delta": {}} if chat else {"text": ""})
    lines.append(f"data: {json.dumps({'choices': [finish]})}\n\n")
    lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


def _openai(handler: Any, **options: Any) -> OpenAILLM:
    llm = OpenAILLM("http://llm.test/v1", "m", backoff=0.01, **options)

    async def load() -> None:
        llm._client = httpx.AsyncClient(
            base_url=llm.url,
            transport=httpx.MockTransport(handler),
            headers={"Authorization": "Bearer sk-secret-123"},
        )

    llm._load = load  # type: ignore[method-assign]
    llm._probed = True  # the start-up probe has tests of its own, below
    llm._llama_server = False  # what the probe would have learned of another server
    return llm


async def test_openai_streams_completions_and_chat() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append((request.url.path, body))
        chat = request.url.path.endswith("/chat/completions")
        return httpx.Response(200, content=_sse(["Hel", "lo."], chat=chat))

    llm = _openai(handler)
    assert await llm.complete("Say hi", Sampling(max_tokens=5, top_k=20, stop=("\n",))) == "Hello."
    assert await llm.complete([{"role": "user", "content": "hi"}]) == "Hello."
    (path1, body1), (path2, body2) = seen
    assert path1 == "/v1/completions" and body1["prompt"] == "Say hi" and body1["stream"]
    assert body1["top_k"] == 20 and body1["stop"] == ["\n"] and "priority" not in body1
    assert path2 == "/v1/chat/completions" and body2["messages"][0]["content"] == "hi"
    await llm.close()


async def test_openai_retries_429_and_5xx_then_streams(caplog: pytest.LogCaptureFixture) -> None:
    answers = iter([429, 503, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        if status != 200:
            return httpx.Response(status, headers={"Retry-After": "0"}, text="busy")
        return httpx.Response(200, content=_sse(["ok"]))

    llm = _openai(handler)
    with caplog.at_level(logging.DEBUG):
        assert await llm.complete("x") == "ok"
    assert "sk-secret-123" not in caplog.text and "sk-secret-123" not in repr(llm)
    assert "retry 2/4" in caplog.text
    await llm.close()


async def test_openai_does_not_retry_a_bad_request() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(400, text="bad prompt")

    llm = _openai(handler)
    with pytest.raises(LLMError, match="HTTP 400: bad prompt") as info:
        await llm.complete("x")
    assert calls == 1 and not info.value.retriable
    await llm.close()


async def test_an_empty_answer_body_is_called_empty() -> None:
    llm = _openai(lambda request: httpx.Response(400))
    with pytest.raises(LLMError) as info:
        await llm.complete("x")
    assert str(info.value) == "http://llm.test/v1/completions answered HTTP 400 with an empty body"
    await llm.close()


async def test_openai_retries_connection_errors_then_gives_up() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("refused")

    llm = _openai(handler, retries=2)
    with pytest.raises(LLMError, match="unreachable after 3 tries") as info:
        await llm.complete("x")
    assert calls == 3 and info.value.retriable
    await llm.close()


async def test_openai_a_server_that_answers_without_end_is_cut_off() -> None:
    # Found by a new user: a server that ignored max_tokens and streamed for ever held
    # its record (and an engine slot) for ever, the query never finished.
    async def forever() -> AsyncIterator[bytes]:
        while True:
            yield b'data: {"choices": [{"text": " It goes on and on."}]}\n\n'

    llm = _openai(lambda request: httpx.Response(200, content=forever()))
    with pytest.raises(LLMError, match="more than 4,096 characters for max_tokens=16"):
        async for _ in llm.stream("x", Sampling(max_tokens=16)):
            pass
    await llm.close()


async def test_openai_a_server_that_does_not_answer_is_named_so_not_unreachable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("")

    llm = _openai(handler, retries=1)
    with pytest.raises(LLMError, match="no answer within 60 s after 2 tries"):
        await llm.complete("x")
    await llm.close()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed: nothing listens there


@pytest.mark.parametrize("where", ["nothing-listening", "no-v1"])
async def test_openai_a_wrong_url_is_one_warning_at_start_not_a_failure(
    where: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Found by a new user: a worker with ALTO_LLM_URL=http://127.0.0.1:18999/v1 (nothing
    # listening), or without /v1, logged "started"; every query then failed seconds later.
    if where == "nothing-listening":
        llm = OpenAILLM(f"http://127.0.0.1:{_free_port()}/v1")
    else:
        llm = OpenAILLM("http://llm.test")
        llm._transport = httpx.MockTransport(lambda request: httpx.Response(404))
    with caplog.at_level(logging.WARNING):
        await llm.start()  # not failed: the server may come up later
        await llm.check()  # probed once only
    assert llm._started
    [warning] = [r for r in caplog.records if "the LLM server at" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    message = warning.getMessage()
    assert "check ALTO_LLM_URL (it ends in /v1 for vllm serve and llama_cpp.server)" in message
    # A 404 is an answer: the server is there, its path is likely wrong.
    assert ("answered HTTP 404" in message) == (where == "no-v1")
    assert ("not reachable now" in message) == (where == "nothing-listening")
    await llm.close()


async def test_openai_a_busy_server_is_not_called_unreachable_at_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Found by a new user: llama_cpp.server (one request at a time), busy generating
    # for other workers, was "not reachable now ... check ALTO_LLM_URL" to a restarted
    # worker's probe; every later call succeeded. It took the request: it is busy.
    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        await done.wait()  # the request is taken, never answered
        writer.close()

    monkeypatch.setattr(openai_http, "_PROBE_TIMEOUT", 0.3)
    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    llm = OpenAILLM(f"http://127.0.0.1:{port}/v1")
    try:
        with caplog.at_level(logging.WARNING):
            await llm.check()
    finally:
        done.set()
        server.close()
        await server.wait_closed()
    [warning] = [r for r in caplog.records if "the LLM server at" in r.getMessage()]
    message = warning.getMessage()
    assert "accepted the connection but did not answer GET /models within 0.3 s: busy" in message
    assert "calls wait for it (up to 60 s each)" in message
    assert "not reachable" not in message and "check ALTO_LLM_URL" not in message


async def test_openai_a_server_that_answers_models_is_not_warned_of(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url} {request.headers.get('authorization')}")
        return httpx.Response(200, json={"data": [{"id": "m"}]})

    monkeypatch.setenv("ALTO_LLM_API_KEY", "sk-probe")
    llm = OpenAILLM("http://llm.test/v1")
    llm._transport = httpx.MockTransport(handler)
    with caplog.at_level(logging.WARNING):
        await llm.check()
    assert seen == ["GET http://llm.test/v1/models Bearer sk-probe"]
    assert "not reachable" not in caplog.text and "sk-probe" not in caplog.text


@pytest.mark.parametrize(("owner", "sent"), [("me", True), ("vllm", False), ("openai", False)])
async def test_llama_cpp_server_is_told_no_repeat_penalty_as_sampling_means_everywhere(
    owner: str, sent: bool
) -> None:
    # Found by a new user: ALTO_LLM_SEED gave other text on llama_cpp.server than in process,
    # whose request default is repeat_penalty=1.1 (llama.cpp's and vLLM's: 1.0, none).
    bodies: list[dict[str, Any]] = []
    down = owner == "me"  # and not up yet when the worker starts: learned on the first call

    def handler(request: httpx.Request) -> httpx.Response:
        if down:
            raise httpx.ConnectError("refused", request=request)
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "m", "owned_by": owner}]})
        bodies.append(json.loads(request.content))
        return httpx.Response(200, content=_sse(["ok"]))

    llm = OpenAILLM("http://llm.test/v1", "m", backoff=0.01)
    llm._transport = httpx.MockTransport(handler)
    await llm.start()
    down = False
    assert await llm.complete("x") == "ok"
    assert await llm.complete("y", Sampling(seed=5)) == "ok"
    assert [b.get("repeat_penalty") for b in bodies] == [1.0 if sent else None] * 2
    assert all("repetition_penalty" not in b for b in bodies)
    await llm.close()


async def test_a_worker_start_probes_its_stage_s_openai_server(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(resources, "_REGISTRY", [])
    config = LLMConfig.from_env({"ALTO_LLM_BACKEND": "openai", "ALTO_LLM_URL": "http://x:1"})
    llm = shared_llm(config, stages=["gen"], app="probe")  # checked at start, not preloaded
    assert isinstance(llm, OpenAILLM)
    llm._transport = httpx.MockTransport(lambda request: httpx.Response(404))
    with caplog.at_level(logging.WARNING):
        await resources.start_for("gen", "probe")
    assert "the LLM server at http://x:1 answered HTTP 404 to GET /models" in caplog.text
    await resources.close_all()


async def test_openai_a_404_says_where_the_api_lives() -> None:
    llm = _openai(lambda request: httpx.Response(404, text='{"detail":"Not Found"}'))
    with pytest.raises(LLMError, match="answer /completions under /v1"):
        await llm.complete("x")
    await llm.close()


@pytest.mark.parametrize(
    "body",
    [
        b'data: {"choices": [{"text": "The sky is"}]}\n\n',  # cut before [DONE]
        # llama_cpp.server when another request interrupts the generation:
        b'data: {"choices": [{"text": " A", "finish_reason": null}]}\n\ndata: [DONE]\n\n',
        b'{"choices": [{"text": "The sky is blue."}]}',  # not streamed: no event at all
        b"<html>502 Bad Gateway</html>",
    ],
)
async def test_openai_a_stream_without_a_finish_reason_is_an_error_not_a_short_answer(
    body: bytes,
) -> None:
    llm = _openai(lambda request: httpx.Response(200, content=body))
    with pytest.raises(LLMError, match="without a finish_reason") as info:
        await llm.complete("x")
    assert info.value.retriable  # the record's re-run may get the whole text
    # Not llama_cpp.server: its flag is no fix here (a new user's fake server was told it).
    assert "interrupt_requests" not in str(info.value)
    await llm.close()


async def test_openai_a_cut_stream_from_llama_cpp_server_names_its_flag() -> None:
    body = b'data: {"choices": [{"text": " A"}]}\n\ndata: [DONE]\n\n'
    llm = _openai(lambda request: httpx.Response(200, content=body))
    llm._llama_server = True  # what the probe learns of llama_cpp.server (tested below)
    with pytest.raises(LLMError, match="start it with --interrupt_requests False"):
        await llm.complete("x")
    await llm.close()


async def test_openai_a_text_that_is_not_a_string_is_a_malformed_event() -> None:
    body = b'data: {"choices": [{"text": 42, "finish_reason": "stop"}]}\n\ndata: [DONE]\n\n'
    llm = _openai(lambda request: httpx.Response(200, content=body))
    with pytest.raises(LLMError, match="malformed event"):
        await llm.complete("x")
    await llm.close()


async def test_openai_a_last_finish_reason_ends_a_stream_without_done() -> None:
    body = b'data: {"choices": [{"text": "Blue.", "finish_reason": "stop"}]}\n\n'
    llm = _openai(lambda request: httpx.Response(200, content=body))
    assert await llm.complete("x") == "Blue."
    await llm.close()


@pytest.mark.parametrize("retry_after", ["inf", "1e400", "86400"])
async def test_openai_a_retry_after_past_the_request_timeout_is_cut_to_it(
    retry_after: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pauses: list[float] = []

    async def sleep(delay: float) -> None:
        pauses.append(delay)

    monkeypatch.setattr("alto_stream.components.llm.openai_http.asyncio.sleep", sleep)
    answers = iter([429, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        if next(answers) == 429:
            return httpx.Response(429, headers={"Retry-After": retry_after}, text="slow down")
        return httpx.Response(200, content=_sse(["ok"]))

    llm = _openai(handler, timeout=30.0)
    assert await llm.complete("x") == "ok"
    assert pauses == [30.0]  # never asleep for hours (or for ever) on one record
    await llm.close()


async def test_openai_sends_priority_from_the_query_arrival_time() -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        assert request.headers["X-Request-Id"].startswith("q-7")
        return httpx.Response(200, content=_sse(["."]))

    llm = _openai(handler, priority=True, request_ids=True)
    token = bind_record(Ancestry.root("q-7", query_time=100.5))
    try:
        await llm.complete("x")
    finally:
        unbind_record(token)
    assert bodies[0]["priority"] == 100_500
    await llm.close()


async def test_openai_many_requests_in_flight_at_once() -> None:
    active = peak = 0
    lock = threading.Lock()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        await asyncio.sleep(0.1)
        with lock:
            active -= 1
        return httpx.Response(200, content=_sse(["x"]))

    llm = _openai(handler)
    await asyncio.gather(*(llm.complete(str(i)) for i in range(20)))
    assert peak >= 10
    await llm.close()


async def test_a_configured_seed_goes_with_every_call_that_sets_none() -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, content=_sse(["."]))

    llm = _openai(handler)
    llm.seed = create_llm(
        LLMConfig.from_env({"ALTO_LLM_SEED": "7"}, backend="openai", url="http://x/v1")
    ).seed
    await llm.complete("x")
    await llm.complete("x", Sampling(seed=3))  # the call's own seed wins
    llm.seed = None
    await llm.complete("x")
    assert [b.get("seed") for b in bodies] == [7, 3, None]
    await llm.close()


def test_the_request_time_out_comes_from_the_environment_or_fails_clearly() -> None:
    config = LLMConfig.from_env({"ALTO_LLM_TIMEOUT": "300"}, backend="openai", url="http://x/v1")
    assert config.timeout == 300.0
    assert create_llm(config).timeout == 300.0  # type: ignore[attr-defined]
    for bad in ("soon", "0", "-5", "inf"):
        with pytest.raises(ConfigError, match="ALTO_LLM_TIMEOUT must be a positive number"):
            LLMConfig.from_env({"ALTO_LLM_TIMEOUT": bad}, backend="openai", url="http://x/v1")


def test_openai_api_key_never_in_repr_or_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALTO_LLM_API_KEY", "sk-top-secret")
    config = LLMConfig.from_env(backend="openai", url="http://x/v1")
    llm = create_llm(config)
    assert "sk-top-secret" not in repr(config) + repr(llm) + llm.name


# -- configuration and lifecycle ---------------------------------------------


def test_config_from_env() -> None:
    env = {
        "ALTO_LLM_BACKEND": "OpenAI",
        "ALTO_LLM_URL": "http://h:8000/v1",
        "ALTO_LLM_PRIORITY": "1",
    }
    config = LLMConfig.from_env(env)
    assert (config.backend, config.url, config.priority) == ("openai", "http://h:8000/v1", True)
    assert LLMConfig.from_env(env, backend="llama_cpp").backend == "llama_cpp"  # code wins
    assert LLMConfig.from_env({}).backend == "llama_cpp"
    with pytest.raises(ConfigError, match="unknown LLM backend 'tgi'"):
        LLMConfig.from_env({"ALTO_LLM_BACKEND": "tgi"})
    with pytest.raises(ConfigError, match="ALTO_LLM_THREADS"):
        LLMConfig.from_env({"ALTO_LLM_THREADS": "many"})
    with pytest.raises(ConfigError, match="ALTO_LLM_SEED must be a number"):
        LLMConfig.from_env({"ALTO_LLM_SEED": "x"})
    assert LLMConfig.from_env({"ALTO_LLM_SEED": "42"}).seed == 42


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ALTO_LLM_BACKEND": "vllm"}, "the vllm backend needs a model: set ALTO_LLM_MODEL"),
        ({"ALTO_LLM_BACKEND": "openai"}, "the openai backend needs the server's URL"),
    ],
)
async def test_what_a_backend_lacks_is_refused_when_it_starts_not_when_the_app_loads(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    from alto_stream.ops.loading import load_app

    monkeypatch.setattr(resources, "_REGISTRY", [])
    monkeypatch.delenv("ALTO_LLM_MODEL", raising=False)
    monkeypatch.delenv("ALTO_LLM_URL", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    name = f"lacks-{env['ALTO_LLM_BACKEND']}"
    load_app(
        f"workers.llmflow:build({name!r})"
    ).topology()  # what `push`, `topics` or `trace` do: no error
    llm = shared_llm()
    assert "(no " in llm.name
    with pytest.raises(LLMUnavailableError, match=message):  # a worker's check at start
        await resources.start_for("generate", app=name)
    with pytest.raises(LLMUnavailableError, match=message):  # or the first call
        await llm.complete("hi")


async def test_shared_llm_is_one_instance_started_and_closed_by_the_worker_hooks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(resources, "_REGISTRY", [])
    config = LLMConfig(model="/nonexistent/model.gguf")
    first = shared_llm(config, stages=["gen"], preload=True)
    assert shared_llm(config) is first
    assert first._started is False  # creating it loads nothing
    await resources.start_for("other")  # a stage that did not declare it: nothing
    assert first._started is False
    with pytest.raises(LLMUnavailableError):  # the worker of "gen" fails at start, clearly
        await resources.start_for("gen")
    await resources.close_all()


def test_llm_option_sets_the_backend_for_the_worker_and_its_children(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from alto_stream.cli import app as cli
    from alto_stream.cli.worker_cmd import LLMBackend, use_llm

    monkeypatch.setenv("ALTO_LLM_BACKEND", "llama_cpp")  # restored after the test
    use_llm(None)
    assert os.environ["ALTO_LLM_BACKEND"] == "llama_cpp"
    use_llm(LLMBackend.OPENAI)
    assert os.environ["ALTO_LLM_BACKEND"] == "openai"
    result = CliRunner().invoke(cli, ["worker", "workers.llmflow:app", "generate", "--llm", "tgi"])
    assert result.exit_code == 2 and "tgi" in result.output


class ChattyLlama(FakeLlama):
    """A base model that answers, then goes on into the next turn, stopping as llama.cpp does."""

    def create_completion(self, prompt: str, **options: Any) -> Iterator[dict[str, Any]]:
        self.calls.append({"prompt": prompt, **options})
        said = ""
        for token in [" Paris.", "\nUser:", " And Spain?", "\nAssistant:", " Madrid."]:
            cut = [(said + token).index(s) for s in options["stop"] or () if s in said + token]
            if cut:  # llama.cpp leaves the stop string, and all after it, out
                yield {"choices": [{"text": (said + token)[len(said) : min(cut)]}]}
                return
            said += token
            yield {"choices": [{"text": token}]}


async def test_llama_cpp_chat_answers_stop_at_the_next_turn() -> None:
    # Found by a new user: complete(messages) rendered "...User: ...\nAssistant:" with
    # no stop, so the base model ran on into "\nUser: And Spain?\nAssistant: Madrid.".
    fake = ChattyLlama(token_time=0)
    llm = _llama(fake)
    messages = [{"role": "user", "content": "Capital of France?"}]
    assert await llm.complete(messages, Sampling(stop=("###",))) == " Paris."
    assert fake.calls[0]["stop"] == ["###", "\nUser:"]
    assert fake.calls[0]["prompt"] == render_chat(messages)
    await llm.complete("Q:")  # a plain prompt: only the stops given
    assert fake.calls[1]["stop"] is None
    await llm.close()


async def test_openai_an_empty_stream_is_not_taken_for_a_cut_one() -> None:
    # Found by a new user: llama_cpp.server answers a prompt longer than its context with
    # 200 and an empty body; the error told them to restart it with a flag it already had,
    # and the stage retried the doomed call.
    llm = _openai(lambda request: httpx.Response(200, content=b""))
    llm._llama_server = True
    with pytest.raises(LLMError, match="empty stream") as info:
        await llm.complete("word " * 3000)
    assert not info.value.retriable
    assert "interrupt_requests" not in str(info.value) and "context window" in str(info.value)
    await llm.close()
