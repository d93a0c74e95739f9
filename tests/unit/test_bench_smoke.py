"""The benchmark code runs end to end over the in-memory transport (no timing checked)."""

from __future__ import annotations

import pytest

from alto_stream.runtime.memory import MemoryTransport
from benchmarks import runtime
from benchmarks.harness import percentile, summarize

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("delivery", ["at-least-once", "transactional"])
async def test_each_benchmark_completes_in_memory(delivery: str) -> None:
    transport = MemoryTransport(2)
    lat = await runtime.latency(transport, delivery, queries=5, interval=0.0, where="in-process")
    assert lat.queries == 5
    assert 0.0 <= lat.hop_p50_ms <= lat.hop_p99_ms <= lat.hop_max_ms

    tput = await runtime.throughput(transport, delivery, records=300, where="in-process")
    assert tput.records == 300
    assert tput.records_per_s > 0

    agg = await runtime.aggregate(transport, delivery, queries=3, fanout=7, where="in-process")
    assert (agg.queries, agg.fanout) == (3, 7)
    assert agg.fragments_per_s == pytest.approx(agg.queries_per_s * 7)


async def test_repeat_and_summary_give_median_and_spread() -> None:
    transport = MemoryTransport(1)
    results = await runtime.repeat(
        3, lambda: runtime.throughput(transport, records=50, where="in-process")
    )
    figures = runtime.summary(results)
    assert figures["delivery"] == "at-least-once"
    rate = figures["records_per_s"]
    assert rate.low <= rate.median <= rate.high
    assert len(rate.runs) == 3


def test_percentile_and_summarize() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([3.0], 99) == 3.0
    assert str(summarize([1.0, 5.0, 2.0])) == "2 [1-5]"


def test_process_workers_need_kafka() -> None:
    from alto_stream.errors import AltoError
    from benchmarks.apps import build_map
    from benchmarks.harness import Workers

    with pytest.raises(AltoError, match="Kafka transport"):
        Workers(build_map("bench-x"), MemoryTransport(), "at-least-once", where="process")


def test_the_bare_echo_runs_as_a_process_only() -> None:
    from alto_stream.errors import AltoError
    from benchmarks.apps import build_map
    from benchmarks.harness import Workers

    with pytest.raises(AltoError, match="as a process only"):
        Workers(
            build_map("bench-x"), MemoryTransport(), "at-least-once", where="in-process", bare=True
        )
