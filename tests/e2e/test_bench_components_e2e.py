"""``bench embed`` and ``bench retrieve`` run end to end, small: real model, real broker, processes.

The figures of a run this small mean nothing (benchmarks/README.md has real
runs); the test keeps the benchmark code working.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip(
    "sentence_transformers", reason="the ml extra is not installed: pip install -e '.[ml]'"
)
pytest.importorskip("fanoutqa", reason="the ml extra is not installed: pip install -e '.[ml]'")

from alto_stream.components.embed import Embedder
from alto_stream.components.index import build_index, load_corpus
from alto_stream.runtime.kafka import KafkaTransport
from benchmarks import components

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.timeout(900)]


async def test_bench_embed_measures_each_batch_size(kafka_bootstrap: str) -> None:
    result = await components.embed(KafkaTransport(kafka_bootstrap), sentences=64)
    assert result.sentences == 64
    for batch in components.BATCH_SIZES:
        direct = getattr(result, f"direct_b{batch}_per_s")
        kafka = getattr(result, f"kafka_b{batch}_per_s")
        assert direct > 0 and kafka > 0
        assert math.isclose(getattr(result, f"ratio_b{batch}"), kafka / direct)
    assert 100.0 < result.worker_peak_rss_mb < 16_000.0  # torch and the model were loaded


@pytest.fixture
def small_index(tmp_path: Path) -> Path:
    """An index of the first 40 real summaries."""
    pages = json.loads(components.wiki_file().read_text(encoding="utf-8"))
    corpus = tmp_path / "c.jsonl"
    with corpus.open("w") as out:
        for title, page in list(pages.items())[:40]:
            out.write(json.dumps({"id": title, "title": title, "text": page["extract"]}) + "\n")
    build_index(load_corpus(corpus), tmp_path / "idx", embedder=Embedder())
    return tmp_path / "idx"


async def test_bench_retrieve_measures_direct_and_kafka_latency(
    kafka_bootstrap: str, small_index: Path
) -> None:
    transport = KafkaTransport(kafka_bootstrap)
    result = await components.retrieve(transport, index=str(small_index), queries=8)
    assert result.queries == 8 and result.passages >= 40
    assert 0 < result.search_only_p50_ms <= result.direct_p50_ms
    assert result.direct_p50_ms <= result.direct_p99_ms
    assert 0 <= result.kafka_hop_p50_ms <= result.kafka_hop_p99_ms
    assert result.worker_peak_rss_mb > 100.0 and result.bench_peak_rss_mb > 100.0
