"""What the benchmarks share: topics, workers (processes or tasks), reading, statistics.

Workers run either as separate processes (``python -m alto_stream.cli worker``,
what production runs; Kafka only) or as tasks of this process
(:class:`~alto_stream.runner.LocalRun`; any transport, the in-memory one included).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Literal

from alto_stream.app import App, Topology
from alto_stream.client import Client
from alto_stream.errors import AltoError
from alto_stream.message import MessageCodec
from alto_stream.runner import LocalRun
from alto_stream.runtime.kafka import KafkaOps, KafkaTransport
from alto_stream.runtime.memory import MemoryTransport
from alto_stream.runtime.worker import DeliveryMode, WorkerOptions
from alto_stream.transport import InRecord, Transport

__all__ = [
    "REPO",
    "Summary",
    "Where",
    "Workers",
    "create_topics",
    "lag",
    "percentile",
    "prefill",
    "read_all",
    "summarize",
    "unique_name",
]

REPO = Path(__file__).resolve().parents[1]
"""The checkout the benchmarks run from (worker processes import ``benchmarks`` from it)."""

Where = Literal["process", "in-process"]


def unique_name(kind: str, delivery: DeliveryMode) -> str:
    """A fresh app name, so every run has its own topics and groups."""
    mode = "tx" if delivery == "transactional" else "alo"
    return f"bench-{kind}-{mode}-{uuid.uuid4().hex[:8]}"


async def create_topics(transport: Transport, topology: Topology, partitions: int) -> None:
    """Create every topic of ``topology`` with ``partitions`` partitions."""
    specs = topology.topic_specs(partitions=partitions)
    if isinstance(transport, KafkaTransport):
        await transport.ensure_topics(specs)
    elif isinstance(transport, MemoryTransport):
        for spec in specs:
            transport.create_topic(spec.name, spec.partitions)
    else:
        raise AltoError(f"cannot create topics on {type(transport).__name__}")


async def prefill(
    transport: Transport, topology: Topology, count: int, *, batch: int = 5000
) -> float:
    """Push ``count`` queries ``{"text": "q<i>"}`` in batches; returns the seconds it took."""
    started = time.perf_counter()
    async with Client(topology, transport) as client:
        for first in range(0, count, batch):
            values = [{"text": f"q{i}"} for i in range(first, min(first + batch, count))]
            await client.push_many(values)
    return time.perf_counter() - started


async def lag(transport: Transport, group: str, topic: str) -> int:
    """Records of ``topic`` that ``group`` has not committed yet (all partitions)."""
    if isinstance(transport, KafkaTransport):
        return sum((await KafkaOps(transport).group_lag(group, [topic])).values())
    if isinstance(transport, MemoryTransport):
        committed = transport.groups[group].committed
        parts = transport.topics.get(topic, [])
        return sum(len(part) - committed.get((topic, p), 0) for p, part in enumerate(parts))
    raise AltoError(f"cannot read group lag on {type(transport).__name__}")


async def read_all(transport: Transport, topics: Sequence[str]) -> list[InRecord]:
    """Every record of ``topics`` now (committed ones only), in no particular order."""
    reader = transport.reader(list(topics))
    await reader.start()
    out: list[InRecord] = []
    try:
        while True:
            batch = await reader.fetch(0.2, 5000)
            out.extend(batch)
            if not batch and await reader.end_reached():
                return out
    finally:
        await reader.stop()


def query_ids(records: Sequence[InRecord], codec: MessageCodec) -> dict[str, float]:
    """Query id -> Kafka timestamp of the first record of each query in ``records``."""
    found: dict[str, float] = {}
    for record in records:
        ancestry = codec.decode(record.value, record.headers).ancestry
        found.setdefault(ancestry.query_id, record.timestamp)
    return found


class Workers:
    """One worker per stage of ``app`` while the ``async with`` block runs."""

    def __init__(
        self,
        app: App,
        transport: Transport,
        delivery: DeliveryMode,
        *,
        where: Where,
        app_ref: str | None = None,
        bare: bool = False,
    ) -> None:
        if where == "process" and not (isinstance(transport, KafkaTransport) and app_ref):
            raise AltoError("worker processes need the Kafka transport and an app reference")
        if bare and where != "process":
            raise AltoError("the bare aiokafka echo (benchmarks.floor) runs as a process only")
        self.app = app
        self.transport = transport
        self.delivery = delivery
        self.where = where
        self.app_ref = app_ref
        self.bare = bare  # each stage is benchmarks.floor's bare echo, not an alto-stream worker
        self.started = 0.0
        self._local: LocalRun | None = None
        self._procs: list[asyncio.subprocess.Process] = []
        self._logs = tempfile.TemporaryDirectory(prefix="alto-bench-")
        self._files: list[BinaryIO] = []

    async def __aenter__(self) -> Workers:
        self.started = time.time()
        if self.where == "in-process":
            options = WorkerOptions(delivery=self.delivery)
            self._local = LocalRun(self.app, self.transport, options=options)
            await self._local.__aenter__()
            return self
        assert isinstance(self.transport, KafkaTransport) and self.app_ref
        env = {
            **os.environ,
            # The transport's security settings (in the environment: no secret in argv).
            **self.transport.security.child_env(),
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        }
        topology = self.app.topology()
        for stage in topology.stages:
            argv = [sys.executable, "-m", "alto_stream.cli", "worker", self.app_ref, stage]
            argv += ["--bootstrap-servers", self.transport.bootstrap, "--delivery", self.delivery]
            if self.bare:
                plan = topology.plan(stage)
                argv = [sys.executable, "-m", "benchmarks.floor", self.transport.bootstrap]
                argv += [plan.input_topic, plan.output_topic, plan.group]
            log = self._log(stage)
            self._procs.append(
                await asyncio.create_subprocess_exec(
                    *argv, cwd=REPO, env=env, stdout=log, stderr=log
                )
            )
        return self

    def _log(self, stage: str) -> BinaryIO:
        log = Path(self._logs.name, f"{stage}.log").open("wb")  # noqa: SIM115 closed on exit
        self._files.append(log)
        return log

    def pids(self) -> list[int]:
        """The worker processes' ids (none when the workers run in this process)."""
        return [proc.pid for proc in self._procs]

    def check(self) -> None:
        """Raise if a worker process ended early (with its log's tail)."""
        if self.where == "in-process":
            return  # LocalRun raises a failed worker's error when the block ends
        for proc, stage in zip(self._procs, self.app.topology().stages, strict=True):
            if proc.returncode is not None:
                tail = Path(self._logs.name, f"{stage}.log").read_text(errors="replace")[-2000:]
                raise AltoError(f"worker {stage} exited with {proc.returncode}:\n{tail}")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._local is not None:
            await self._local.__aexit__(exc_type, exc, tb)
        for proc in self._procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs:
            try:
                await asyncio.wait_for(proc.wait(), 20.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for file in self._files:
            file.close()
        with contextlib.suppress(OSError):
            self._logs.cleanup()


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, linearly interpolated."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True)
class Summary:
    """The median of repeated runs of one figure and its spread (min, max)."""

    median: float
    low: float
    high: float
    runs: tuple[float, ...]

    def __str__(self) -> str:
        return f"{self.median:.4g} [{self.low:.4g}-{self.high:.4g}]"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {"median": self.median, "min": self.low, "max": self.high, "runs": list(self.runs)}


def summarize(values: Sequence[float]) -> Summary:
    """The :class:`Summary` of one figure over repeated runs."""
    return Summary(statistics.median(values), min(values), max(values), tuple(values))
