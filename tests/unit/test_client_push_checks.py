"""Client.push refuses what the CLI's push refuses, before anything is sent."""

from __future__ import annotations

from typing import Any

import pytest

from alto_stream import App
from alto_stream.client import Client
from alto_stream.codec import Codec
from alto_stream.errors import ConfigError
from alto_stream.ops.queries import read_queries
from alto_stream.runtime.memory import MemoryTransport

pytestmark = pytest.mark.timeout(30)


def _app() -> App:
    app = App("push-checks", input_schema="alto.Text")

    @app.map(source=app.input, schema="alto.Text")
    def echo(q: dict[str, Any]) -> dict[str, Any]:
        return q

    return app


async def _refused(transport: MemoryTransport, **push: Any) -> str:
    app = _app()
    async with Client(app, transport) as client:
        values = push.get("values", [push.get("value")])
        query_ids = push.get("query_ids", [push["query_id"]] if "query_id" in push else None)
        with pytest.raises(ConfigError) as info:
            await client.push_many(values, query_ids=query_ids)
    assert transport.records(app.topology().input_topic) == []  # nothing was sent
    return str(info.value)


async def test_a_query_id_too_long_for_the_ancestry_header_is_refused() -> None:
    # Found by a new user: a 100,000-character id was pushed, then every stage
    # dead-lettered it ("an 100025-byte ancestry header ...") and it never got a final.
    message = await _refused(MemoryTransport(1), value={"text": "x"}, query_id="q" * 100_000)
    assert "100,000 characters, more than 1,000" in message
    assert "max_ancestry_bytes" in message
    assert "empty query id" in await _refused(MemoryTransport(1), value={"text": "x"}, query_id="")


async def test_a_query_larger_than_a_record_is_refused_as_push_refuses_it() -> None:
    # Before: 1,020,000 bytes were accepted (the CLI refuses over 1,000,000), and
    # 2 MB were a raw RecordRejectedError (MessageSizeTooLargeError) from Kafka.
    big = {"text": "x" * 1_020_000}
    message = await _refused(MemoryTransport(1), values=[{"text": "ok"}, big])
    # Counted as the workers count a record: value, key and headers.
    assert "query 2 of 2 is 1,020,1" in message and "ALTO_MAX_RECORD_BYTES" in message
    with pytest.raises(ConfigError, match="more than a record may be"):
        read_queries(["x" * 20], None, None, "alto.Text", Codec(), max_bytes=10)


async def test_a_lone_surrogate_is_named_not_blamed_on_the_schema() -> None:
    # Before: "value does not fit schema alto.Text: UnicodeEncodeError ...;
    # fix: make the value match alto.Text (see its .avsc)".
    message = await _refused(MemoryTransport(1), value={"text": "ab\ud800c"})
    assert "cannot be encoded as UTF-8 (a lone surrogate '\\ud800' at position 2)" in message
    with pytest.raises(ConfigError, match="field 'text' cannot be encoded as UTF-8") as info:
        read_queries([], '{"text": "ab\\ud800"}', None, "alto.Text", Codec())
    assert ".avsc" not in str(info.value)


async def test_ids_and_values_must_pair_and_good_queries_go_through() -> None:
    message = await _refused(MemoryTransport(1), values=[{"text": "a"}], query_ids=["a", "b"])
    assert "1 values and 2 query ids" in message
    app, transport = _app(), MemoryTransport(1)
    async with Client(app, transport) as client:
        assert await client.push({"text": "a"}, query_id="é" * 1000) == "é" * 1000
    assert len(transport.records(app.topology().input_topic)) == 1


async def test_a_value_nested_too_deeply_is_refused_not_a_recursion_error() -> None:
    # Found by a new user: a value 5,000 lists deep was a RecursionError from deep
    # inside the checks ("maximum recursion depth exceeded in __instancecheck__").
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    message = await _refused(MemoryTransport(1), value={"text": deep})
    assert message.startswith("the query is nested too deeply: more than 100 levels")
    message = await _refused(MemoryTransport(1), values=[{"text": "x"}, {"text": "y", "m": deep}])
    assert message.startswith("query 2 of 2 is nested too deeply")
    itself: dict[str, Any] = {"text": "x"}
    itself["self"] = itself  # a value that holds itself: endlessly deep
    assert "nested too deeply" in await _refused(MemoryTransport(1), value=itself)
