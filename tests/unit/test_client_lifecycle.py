"""The Client's life: bounded pushes, one event loop, entered once, new query ids, quiet logs.

Each was a defect a new user found (a push hung for a 4.5-minute broker outage,
a push from another thread's loop blocked forever, ...).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from alto_stream import App
from alto_stream.ancestry import Ancestry, Kind
from alto_stream.client import Client, Result
from alto_stream.errors import ConfigError, SchemaError, TransportError
from alto_stream.message import Envelope
from alto_stream.runtime.memory import MemoryTransport, _MemoryProducer
from alto_stream.transport import OutRecord

pytestmark = pytest.mark.timeout(30)


def _app() -> App:
    app = App("client-life", input_schema="alto.Text")

    @app.map(source=app.input, schema="alto.Text")
    def echo(q: dict[str, Any]) -> dict[str, Any]:
        return q

    return app


class _SilentBroker(MemoryTransport):
    """A broker that never acknowledges (it went away): sends wait until aborted."""

    bootstrap = "10.9.9.9:9092"

    def __init__(self) -> None:
        super().__init__(1)
        self.aborted: list[BaseException] = []

    def producer(self, *, transactional_id: str | None = None) -> _MemoryProducer:
        transport = self

        class Silent(_MemoryProducer):
            async def send_many(self, records: Sequence[OutRecord]) -> None:
                self.pending = asyncio.get_running_loop().create_future()
                await asyncio.shield(self.pending)

            async def stop(self) -> None:  # aiokafka's stop waits for every record
                if hasattr(self, "pending"):
                    await self.pending

            def abort(self, error: BaseException) -> None:
                transport.aborted.append(error)
                if hasattr(self, "pending") and not self.pending.done():
                    self.pending.set_exception(error)
                    self.pending.exception()

        return Silent(self)


async def test_a_push_to_a_silent_broker_gives_up_after_push_timeout() -> None:
    # Before: push waited as long as the broker was down (4.5 min, silent).
    transport = _SilentBroker()
    began = time.monotonic()
    async with Client(_app(), transport, push_timeout=0.3) as client:
        with pytest.raises(TransportError, match="did not acknowledge 1 queries") as info:
            await client.push({"text": "a"})
    assert time.monotonic() - began < 5  # and closing did not wait for the broker either
    assert "Kafka at 10.9.9.9:9092" in str(info.value) and "within 0.3s" in str(info.value)
    assert info.value.retriable
    assert len(transport.aborted) == 1


async def test_closing_waits_push_timeout_for_unacknowledged_records_then_says_so() -> None:
    client = Client(_app(), _SilentBroker(), push_timeout=0.3)
    await client.__aenter__()
    push = asyncio.create_task(client.push({"text": "a"}))
    await asyncio.sleep(0.05)
    push.cancel()  # the caller gave up; the record still waits in the producer
    with pytest.raises(TransportError, match=r"within 0\.3s of closing the client"):
        await client.__aexit__(None, None, None)


def test_a_client_refuses_use_from_another_event_loop() -> None:
    # Before: a push from another thread's loop blocked forever.
    client = Client(_app(), MemoryTransport(1))
    owner = asyncio.new_event_loop()
    thread = threading.Thread(target=owner.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(client.__aenter__(), owner).result(10)
        with pytest.raises(RuntimeError, match="opened on another event loop"):
            asyncio.run(client.push({"text": "from elsewhere"}))
        with pytest.raises(RuntimeError, match="opened on another event loop"):
            asyncio.run(client.__aexit__(None, None, None))
        ran = asyncio.run_coroutine_threadsafe(client.push({"text": "a"}), owner).result(10)
        assert ran
        asyncio.run_coroutine_threadsafe(client.__aexit__(None, None, None), owner).result(10)
    finally:
        owner.call_soon_threadsafe(owner.stop)
        thread.join(5)


async def test_entering_a_client_twice_is_refused_and_leaks_nothing() -> None:
    # Before: the inner entry replaced (and leaked) the first producer.
    started: list[_MemoryProducer] = []

    class Counting(MemoryTransport):
        def producer(self, *, transactional_id: str | None = None) -> _MemoryProducer:
            started.append(super().producer())
            return started[-1]

    client = Client(_app(), Counting(1))
    async with client:
        with pytest.raises(RuntimeError, match="open already"):
            async with client:
                pass
        assert await client.push({"text": "still open"})
    assert len(started) == 1
    async with client:  # entering again after closing is fine
        assert await client.push({"text": "again"})


async def test_a_query_id_twice_in_one_call_or_pushed_again_is_refused() -> None:
    app, transport = _app(), MemoryTransport(1)
    async with Client(app, transport) as client:
        with pytest.raises(ConfigError, match="query 2 of 2 has the query id 'q' of query 1"):
            await client.push_many([{"text": "a"}, {"text": "b"}], query_ids=["q", "q"])
        assert transport.records(app.topology().input_topic) == []  # nothing was sent
        await client.push({"text": "a"}, query_id="q")
        with pytest.raises(ConfigError, match=r"pushed by this client before.*must be new"):
            await client.push({"text": "b"}, query_id="q")
    assert len(transport.records(app.topology().input_topic)) == 1


async def test_schema_errors_name_the_query_and_none_is_not_an_ancestry_error() -> None:
    async with Client(_app(), MemoryTransport(1)) as client:
        bad = [{"text": "a"}, {"txt": "b"}, {"text": "c"}]
        with pytest.raises(SchemaError, match=r"^query 2 of 3: value does not fit"):
            await client.push_many(bad)
        with pytest.raises(SchemaError, match=r"push needs a dict fitting alto\.Text, got None"):
            await client.push(None)  # type: ignore[arg-type]
        with pytest.raises(SchemaError, match=r"query 1 of 2: .* got a str"):
            await client.push_many(["text", {"text": "b"}])  # type: ignore[list-item]


async def test_aiokafka_repeats_are_limited_while_a_client_is_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Before: 46,167 lines in 47 s while the broker was down.
    noisy = logging.getLogger("aiokafka.client")
    caplog.set_level(logging.WARNING)
    async with Client(_app(), MemoryTransport(1)):
        for _ in range(500):
            noisy.error("Unable connect to node with id %s: %s", 1, "refused")
    assert len(caplog.records) == 1
    caplog.clear()
    noisy.error("Unable connect to node with id %s: %s", 1, "refused")
    noisy.error("Unable connect to node with id %s: %s", 1, "refused")
    assert len(caplog.records) == 2  # closed: the program's own logging is as it was


def test_a_result_says_why_it_is_a_marker() -> None:
    ancestry = Ancestry.root("q").marker(Kind.ERROR, "boom on piece 'x'")
    result = Result("q", "answer", Envelope(ancestry, None, None, "answer"), True, 0.1)
    assert not result.ok and result.reason == "boom on piece 'x'"
    data = Result("q", "answer", Envelope(Ancestry.root("q"), {"text": "x"}, "alto.Text"), True, 0)
    assert data.ok and data.reason is None


def test_push_timeout_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="push_timeout must be > 0"):
        Client(_app(), MemoryTransport(1), push_timeout=0)
