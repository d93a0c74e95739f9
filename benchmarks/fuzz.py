"""Fuzz the runtime on a real broker: bad records among valid queries lose nothing.

Bad records (:mod:`benchmarks.fuzz_records`) go with raw aiokafka onto the
input and intermediate topics of an app with every stage kind, interleaved
with valid queries, while its workers (two per stage) run in this process.
The invariants, checked by :func:`run`:

- every bad record is accounted for: a dead letter names its position, or its
  query id, or its query has an output of its own;
- every valid query completes, with the sequential result, once (at-least-once
  mode: once after deduplicating by the record's id, see docs/faults.md);
- no worker stopped or failed; no aggregate keeps partial state at the end
  (memory follows what is pending, and nothing stays pending).

The long run (a documented command, at least 10,000 bad records over both
delivery modes)::

    alto-stream broker start --data-dir /tmp/fuzzbroker --port 0   # prints HOST:PORT
    python -m benchmarks.fuzz --bad 10000 --valid 200 -b HOST:PORT
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer

from alto_stream.client import Client
from alto_stream.message import MessageCodec
from alto_stream.runner import LocalRun
from alto_stream.runtime.kafka import KafkaTransport
from alto_stream.runtime.worker import DeliveryMode, WorkerOptions
from alto_stream.settings import bootstrap_servers
from benchmarks.fuzz_records import Bad, BadRecords, build_app, reference, valid_text

__all__ = ["Figures", "main", "run"]


@dataclass
class Figures:
    """What one fuzz run found (the invariants hold when ``problems`` is empty)."""

    delivery: str
    bad: int
    valid: int
    kinds: dict[str, int]
    dead_letters: int
    accounted_by_dead_letter: int
    accounted_by_own_output: int
    valid_completed: int
    valid_correct: int
    final_duplicates: int
    seconds: float
    max_rss_mb: float
    problems: list[str] = field(default_factory=list)


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _produce(producer: AIOKafkaProducer, bads: list[Bad]) -> None:
    """Write the bad records as they are (raw aiokafka), noting where each one landed."""
    sent = [
        await producer.send(bad.topic, bad.value, key=b"fuzz", headers=bad.headers) for bad in bads
    ]
    for bad, future in zip(bads, sent, strict=True):
        meta = await future
        bad.position = (meta.topic, meta.partition, meta.offset)


async def _read_all(transport: KafkaTransport, topics: list[str]) -> list[Any]:
    reader = transport.reader(topics)
    await reader.start()
    out: list[Any] = []
    try:
        while not await reader.end_reached():
            out += await reader.fetch(0.2, 5000)
    finally:
        await reader.stop()
    return out


class _Ledger:
    """What the app wrote: dead letters (by position and query id) and outputs by query."""

    def __init__(self, codec: MessageCodec) -> None:
        self.codec = codec
        self.letter_positions: set[tuple[str, int, int]] = set()
        self.letter_queries: set[str] = set()
        self.letters = 0
        self.outputs: dict[str, list[Any]] = {}

    async def read(self, transport: KafkaTransport, dlqs: list[str], output: str) -> None:
        """Read the dead-letter topics and the output topic again, from their start."""
        self.letter_positions, self.letter_queries, self.letters = set(), set(), 0
        self.outputs = {}
        for record in await _read_all(transport, dlqs):
            envelope = self.codec.decode(record.value, record.headers)
            letter = envelope.value or {}
            self.letters += 1
            self.letter_positions.add((letter["topic"], letter["partition"], letter["offset"]))
            self.letter_queries.add(envelope.ancestry.query_id)
        for record in await _read_all(transport, [output]):
            envelope = self.codec.decode(record.value, record.headers)
            self.outputs.setdefault(envelope.ancestry.query_id, []).append((record, envelope))

    def accounted(self, bad: Bad) -> str | None:
        """How ``bad`` is accounted for: "dead letter", "own output", or None."""
        if bad.position in self.letter_positions or bad.query_id in self.letter_queries:
            return "dead letter"
        if bad.query_id is not None and bad.query_id in self.outputs:
            return "own output"
        return None


async def run(
    bootstrap: str,
    *,
    delivery: DeliveryMode,
    bad: int,
    valid: int,
    seed: int = 1,
    timeout: float = 10.0,
    settle: float = 120.0,
) -> Figures:
    """One fuzz run in ``delivery`` mode; :attr:`Figures.problems` lists broken invariants."""
    started = time.monotonic()
    rng = random.Random(seed)
    app = build_app(f"fuzz-{delivery[:2]}-{uuid.uuid4().hex[:8]}", timeout=timeout)
    topology = app.topology()
    transport = KafkaTransport(bootstrap)
    await transport.ensure_topics(topology.topic_specs(partitions=2))
    bads = BadRecords(app, seed).make(bad)
    texts = [valid_text(rng) for _ in range(valid)]
    options = WorkerOptions(delivery=delivery, commit_interval=0.1, expire_interval=0.5)
    codec = MessageCodec()
    problems: list[str] = []
    raw = AIOKafkaProducer(**transport.client_options(), max_request_size=4_000_000, linger_ms=5)
    await raw.start()
    async with (
        LocalRun(app, transport, replicas=2, options=options) as local,
        Client(app, transport) as client,
    ):
        ids: list[str] = []
        step = max(1, len(bads) // max(1, valid))
        try:
            for i in range(max(valid, 1)):  # interleaved: a valid query, then some bad ones
                if i < valid:
                    ids += await client.push_many([{"text": texts[i]}])
                await _produce(raw, bads[i * step : (i + 1) * step if i < valid - 1 else None])
        finally:
            await raw.stop()
        finals: dict[str, Any] = {}
        try:
            async for result in client.follow(ids, timeout=settle, since=0, partials=False):
                finals[result.query_id] = result
        except TimeoutError as exc:
            problems.append(str(exc))
        ledger = _Ledger(codec)
        deadline = time.monotonic() + settle
        output = topology.plan("document").output_topic
        dlqs = [plan.dead_letter_topic for plan in topology.stages.values()]
        while True:
            await ledger.read(transport, dlqs, output)
            missing = [b for b in bads if ledger.accounted(b) is None]
            pending = sum(
                len(state.tracker)
                for worker in local.workers
                if worker._aggregating is not None
                for state in worker._aggregating.state.partitions.values()
            )
            if (not missing and not pending) or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        for worker in local.workers:
            if worker._fatal is not None or worker._stopping.is_set():
                problems.append(f"worker {worker.plan.name} stopped: {worker._fatal!r}")
    if missing:
        problems.append(f"{len(missing)} bad records unaccounted for, e.g. {missing[:3]}")
    if pending:
        problems.append(f"{pending} ancestors still pending in aggregates")
    copies = Counter(query_id for query_id in ids for _ in ledger.outputs.get(query_id, []))
    duplicates = sum(n - 1 for n in copies.values() if n > 1)
    correct = 0
    wrong: list[str] = []
    for query_id, text in zip(ids, texts, strict=True):
        seen = {codec.encode(e)[0] for _, e in ledger.outputs.get(query_id, [])}
        if len(seen) > 1:
            problems.append(f"query {query_id}: copies of its final differ")
        result = finals.get(query_id)
        if result is not None and result.value == {"text": reference(text)}:
            correct += 1
        elif result is not None and len(wrong) < 3:
            wrong.append(f"{query_id}: {text!r} -> {result.value!r} ({result.envelope.kind})")
    if len(finals) != len(ids) or correct != len(ids):
        problems.append(
            f"{len(ids)} valid queries: {len(finals)} completed, {correct} correct; {wrong}"
        )
    if delivery == "transactional" and duplicates:
        problems.append(f"{duplicates} duplicate finals in transactional mode")
    kinds = Counter(b.kind for b in bads)
    how = Counter(ledger.accounted(b) for b in bads)
    return Figures(
        delivery=delivery,
        bad=len(bads),
        valid=len(ids),
        kinds=dict(sorted(kinds.items())),
        dead_letters=ledger.letters,
        accounted_by_dead_letter=how["dead letter"],
        accounted_by_own_output=how["own output"],
        valid_completed=len(finals),
        valid_correct=correct,
        final_duplicates=duplicates,
        seconds=round(time.monotonic() - started, 1),
        max_rss_mb=round(_max_rss_mb(), 1),
        problems=problems,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.fuzz``: print each mode's figures as JSON; 1 if any problem."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fuzz", description=__doc__)
    parser.add_argument("--bad", type=int, default=10_000, help="bad records in all (both modes)")
    parser.add_argument("--valid", type=int, default=200, help="valid queries in all")
    parser.add_argument("--delivery", choices=["at-least-once", "transactional", "both"],
                        default="both")  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=10.0, help="the aggregates' time-out")
    parser.add_argument("-b", "--bootstrap-servers", default=None)
    args = parser.parse_args(argv)
    modes: list[DeliveryMode] = (
        ["at-least-once", "transactional"] if args.delivery == "both" else [args.delivery]
    )
    bootstrap = bootstrap_servers(args.bootstrap_servers)
    failed = False
    for i, mode in enumerate(modes):
        figures = asyncio.run(
            run(
                bootstrap,
                delivery=mode,
                bad=args.bad // len(modes),
                valid=args.valid // len(modes),
                seed=args.seed + i,
                timeout=args.timeout,
                settle=600.0,
            )
        )
        print(json.dumps(asdict(figures)), flush=True)
        failed = failed or bool(figures.problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
