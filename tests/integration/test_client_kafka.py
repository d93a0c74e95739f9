"""The Client on a real broker: missing topics said at once, a stopped broker bounded and quiet."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from alto_stream import App, broker
from alto_stream.client import Client
from alto_stream.errors import ConfigError, TransportError
from alto_stream.runtime.kafka import KafkaTransport

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


def _app(name: str) -> App:
    app = App(name, input_schema="alto.Text")

    @app.map(source=app.input, schema="alto.Text")
    def echo(q: dict[str, Any]) -> dict[str, Any]:
        return q

    return app


async def test_a_client_says_at_once_that_the_topics_are_missing(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # Before: the first push took 40 s, logged "Topic ... not found in cluster
    # metadata" 387 times, then raised a bare UnknownTopicOrPartitionError.
    app = _app(unique_name("notopics"))
    began = time.monotonic()
    with pytest.raises(ConfigError, match=r"unknown topic\(s\) .*\.input; fix: .*topics apply"):
        async with Client(app, KafkaTransport(kafka_bootstrap)):
            pass
    assert time.monotonic() - began < 10


async def test_a_push_while_the_broker_is_down_fails_in_push_timeout_and_logs_little(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: push waited 4.5 minutes (until the broker came back), and aiokafka
    # logged 46,167 lines in 47 s meanwhile.
    cluster = broker.start(brokers=1, port=0, data_dir=tmp_path)
    stopped = False
    try:
        app = _app("downtest")
        transport = KafkaTransport(cluster.bootstrap)
        await transport.ensure_topics(app.topology().topic_specs(partitions=1))
        caplog.set_level(logging.WARNING, logger="aiokafka")
        async with Client(app, transport, push_timeout=4.0) as client:
            await client.push({"text": "while up"})
            await asyncio.to_thread(broker.stop, tmp_path)
            stopped = True
            began = time.monotonic()
            with pytest.raises(TransportError, match="did not acknowledge 1 queries within 4s"):
                await client.push({"text": "while down"})
            assert time.monotonic() - began < 8
            await asyncio.sleep(3)  # aiokafka keeps trying meanwhile
        assert time.monotonic() - began < 15  # closing did not wait for the broker
        lines = [r for r in caplog.records if r.name.startswith("aiokafka")]
        assert len(lines) < 30, [r.getMessage() for r in lines]
        # Closing dropped the stuck records cleanly (no callback error, no unretrieved future).
        await asyncio.sleep(0.5)
        gc.collect()
        assert not [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    finally:
        if not stopped:
            broker.stop(tmp_path)
