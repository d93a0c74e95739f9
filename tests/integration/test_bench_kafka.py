"""The latency benchmark and its floor (a bare aiokafka echo) on a real broker, worker processes."""

from __future__ import annotations

import pytest

from alto_stream.runtime.kafka import KafkaTransport
from benchmarks import runtime

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]


@pytest.mark.parametrize("measure", [runtime.latency, runtime.floor], ids=["latency", "floor"])
async def test_hops_are_measured_through_a_worker_process(
    kafka_bootstrap: str, measure: object
) -> None:
    result = await measure(KafkaTransport(kafka_bootstrap), queries=20, interval=0.005)  # type: ignore[operator]
    assert result.queries == 20
    # Every query came out (else no hop), within a second of going in.
    assert 0.0 <= result.hop_p50_ms <= result.hop_p99_ms <= result.hop_max_ms < 1000.0
    assert result.roundtrip_p50_ms >= result.hop_p50_ms - 1.0  # a round trip holds the hop
