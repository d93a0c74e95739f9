"""The local broker for real: Java processes, a 3-node KRaft cluster, data across restarts.

These tests start their own clusters (in temp dirs, on free ports) rather than
use ``kafka_bootstrap``: what they test is starting and stopping.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from alto_stream import broker
from alto_stream.broker.nodes import process_alive
from alto_stream.errors import BrokerError
from alto_stream.testing import create_topics, unique_name

pytestmark = pytest.mark.kafka


class _Topic:
    def __init__(self, name: str, partitions: int, replication: int) -> None:
        self.name = name
        self.partitions = partitions
        self.replication = replication
        self.configs = {"min.insync.replicas": "2"}


async def _produce(bootstrap: str, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for i in range(count):
            await producer.send(topic, key=str(i).encode(), value=f"v{i}".encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, count: int) -> set[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=unique_name("g"),
        auto_offset_reset="earliest",
    )
    await consumer.start()
    seen: set[bytes] = set()
    try:
        async with asyncio.timeout(60):
            while len(seen) < count:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    seen.update(r.value for r in records if r.value is not None)
    finally:
        await consumer.stop()
    return seen


async def _roundtrip(bootstrap: str, topic: str, count: int, *, create: bool) -> set[bytes]:
    if create:
        await create_topics(bootstrap, [_Topic(topic, 3, 3)])
        await _produce(bootstrap, topic, count)
    return await _consume(bootstrap, topic, count)


@pytest.mark.timeout(300)
def test_three_nodes_replicate_and_keep_data_across_restart(tmp_path: Path) -> None:
    began = time.monotonic()
    cluster = broker.start(brokers=3, port=0, data_dir=tmp_path)
    started = time.monotonic() - began
    try:
        assert len(cluster.nodes) == 3
        assert all(node.alive for node in cluster.nodes)
        assert broker.start(data_dir=tmp_path).already_running
        with pytest.raises(BrokerError, match="brokers=3; got brokers=1"):
            broker.start(brokers=1, data_dir=tmp_path)

        topic = unique_name("rf3")
        expected = {f"v{i}".encode() for i in range(30)}
        assert asyncio.run(_roundtrip(cluster.bootstrap, topic, 30, create=True)) == expected
        report = broker.status(tmp_path)
        assert report.running
        assert report.brokers_registered == 3
        (described,) = [t for t in report.topics if t.name == topic]
        assert described.replication == 3
        assert all(len(p.isr) == 3 for p in described.partitions)

        assert broker.stop(tmp_path) == [1, 2, 3]
        assert not any(broker.port_in_use(p) for p in (n.port for n in cluster.nodes))
        assert not broker.status(tmp_path).running

        again = broker.start(data_dir=tmp_path)
        assert again.cluster_id == cluster.cluster_id
        assert again.bootstrap == cluster.bootstrap
        assert asyncio.run(_roundtrip(again.bootstrap, topic, 30, create=False)) == expected
        assert (tmp_path / "node-2" / "logs" / "server.log").stat().st_size > 0
        assert again.started == (1, 2, 3)

        # One node killed and brought back: the start says so (it said "3 node(s)").
        (node_2,) = [n for n in again.nodes if n.node_id == 2]
        assert node_2.pid is not None
        os.kill(node_2.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while process_alive(node_2.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        back = _cli("broker", "start", "--data-dir", str(tmp_path))
        assert back.returncode == 0, back.stderr
        assert "node(s) 2 of the 3" in " ".join(back.stderr.split())
    finally:
        broker.stop(tmp_path)
    print(
        f"3-node cluster: first start {started:.1f} s, whole test {time.monotonic() - began:.1f} s"
    )


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from alto_stream.cli import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


@pytest.mark.timeout(240)
def test_cli_starts_reports_and_recovers_from_a_dead_pid_file(tmp_path: Path) -> None:
    try:
        started = _cli("broker", "start", "--data-dir", str(tmp_path), "--port", "0")
        assert started.returncode == 0, started.stderr
        bootstrap = started.stdout.strip()
        assert bootstrap.startswith("127.0.0.1:")

        again = _cli("broker", "start", "--data-dir", str(tmp_path))
        assert again.returncode == 0
        assert "already running" in again.stderr
        assert again.stdout.strip() == bootstrap

        report = json.loads(_cli("broker", "status", "-d", str(tmp_path), "--json").stdout)
        assert report["running"] is True
        assert report["nodes"][0]["alive"] is True

        stopped = _cli("broker", "stop", "-d", str(tmp_path))
        assert stopped.returncode == 0
        assert "stopped node(s) 1" in stopped.stderr
        assert _cli("broker", "status", "-d", str(tmp_path)).returncode == 1

        # A pid file left by a crash (the pid no longer runs Kafka) is cleaned up.
        (tmp_path / "node-1" / "kafka.pid").write_text("999999\n")
        restarted = _cli("broker", "start", "-d", str(tmp_path))
        assert restarted.returncode == 0, restarted.stderr
        assert "stale pid file" in restarted.stderr
        assert restarted.stdout.strip() == bootstrap
    finally:
        broker.stop(tmp_path)
