"""``alto-stream bench rag --system alto --json`` end to end: a real broker, worker processes,
the real MiniLM embedder and index, the EMULATED GPU engine started by the command.

The figures of a run this small mean nothing; the test checks that every query completes,
that the latencies are real and that a partial result (a streamed answer sentence) comes
before the final one. The index is ``ALTO_INDEX_DIR``, else the default Wikipedia index
when built, else a small one (the first 300 summaries) built here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sentence_transformers", reason="needs the ml extra: pip install -e '.[ml]'")
pytest.importorskip("uvicorn", reason="needs the bench extra: pip install -e '.[bench]'")

from workers import common

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index to retrieve from (the default one when built, else 300 summaries)."""
    from alto_stream.components.embed import Embedder
    from alto_stream.components.index import build_index, load_corpus

    path = common.index_dir()
    if not (path / "manifest.json").exists():
        path = tmp_path_factory.mktemp("index") / "wiki-300"
        build_index(load_corpus("wiki", limit=300), path, embedder=Embedder())
    return path


def test_bench_rag_on_alto_with_the_emulated_engine(
    kafka_bootstrap: str, index: Path, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.csv"
    before = _rag_topics(kafka_bootstrap)
    argv = [sys.executable, "-m", "alto_stream.cli", "bench", "rag", "--system", "alto"]
    argv += ["--rate", "1", "--queries", "3", "--json", "--csv", str(rows)]
    argv += ["--bootstrap-servers", kafka_bootstrap, "--index", str(index)]
    done = subprocess.run(
        argv,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
        env=dict(os.environ, ALTO_INDEX_DIR=str(index)),
    )
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["engine"] == "emulated"
    assert (summary["system"], summary["app"], summary["queries"]) == ("alto", "rag", 3)
    assert summary["completed"] == 3, summary
    assert 0 < summary["p50_s"] <= summary["p99_s"]
    assert 0 < summary["first_partial_p50_s"] <= summary["p99_s"]
    assert summary["throughput_qps"] > 0
    lines = rows.read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith("system,app,rate,engine,query_id")
    import csv

    for row in csv.DictReader(lines):
        assert row["error"] == "", row
        assert 0 < float(row["first_partial_s"]) <= float(row["latency_s"])
        assert int(row["partials"]) >= 1
    # The run's topics (rag-<hex>.*) are deleted when it ends (--keep-topics keeps them).
    assert _rag_topics(kafka_bootstrap) <= before


def _rag_topics(bootstrap: str) -> set[str]:
    import asyncio

    from alto_stream.runtime.kafka import KafkaOps, KafkaTransport

    names = asyncio.run(KafkaOps(KafkaTransport(bootstrap)).list_topics())
    return {name for name in names if name.startswith("rag-")}
