"""The app that runs over several hosts, and the client that pushes to it from one of them.

``build(name, delay, in_flight)``: ``words`` (split a text into words) ->
``shout`` (upper-case one word after ``delay`` seconds of waiting, at most
``in_flight`` words at a time per worker: the bottleneck, an I/O-bound stage
like a call to a model server) -> ``joined`` (the words back in order).
``reference(text)`` is its expected output.

``python -m benchmarks.hosts_app push|dump`` runs inside a host's namespace
(the tests and ``benchmarks.hosts`` start it with ``ip netns exec``):

- ``push --app REF --bootstrap B --docs FILE [--partitions N]`` creates the
  app's topics, pushes one query per line of FILE (JSON ``{"text": ...}``),
  follows them and prints one JSON line per final result (``query_id``,
  ``text``, ``ok``, ``seconds`` since the push began, ``at``: the wall-clock
  time), then ``{"done": n,
  "seconds": s}``.
- ``dump --app REF --bootstrap B`` prints one JSON object: for every topic of
  the app, its records read ``read_committed``: ``[id, depth, value]`` for the
  output topic (``id`` from the ``alto.ancestry`` header, see docs/faults.md),
  and the record count for every other topic (``counts``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from alto_stream import App, Child
from alto_stream.client import Client
from alto_stream.message import MessageCodec
from alto_stream.ops.loading import load_app
from alto_stream.runtime.kafka import KafkaTransport

__all__ = ["build", "main", "reference"]


def build(name: str, delay: float = 0.05, in_flight: int = 2) -> App:
    """The three-stage app (see the module docstring)."""
    app = App(name, input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    def words(doc: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in doc["text"].split()]

    @app.map(source=words, schema="alto.Text", max_in_flight=in_flight)
    async def shout(word: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(delay)
        return {"text": word["text"].upper()}

    @app.aggregate(source=shout, closes=words, schema="alto.Text")
    def joined(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] for c in children if c.ok and c.value)}

    return app


def reference(text: str) -> str:
    """What ``joined`` outputs for ``text``."""
    return " ".join(w.upper() for w in text.split())


async def _push(
    ref: str, bootstrap: str, queries: list[dict[str, Any]], partitions: int, timeout: float
) -> None:
    app = load_app(ref)
    transport = KafkaTransport(bootstrap)
    await transport.ensure_topics(app.topology().topic_specs(partitions=partitions))
    began = time.monotonic()
    done = 0
    async with Client(app, transport) as client:
        ids = await client.push_many(queries)
        print(json.dumps({"pushed": len(ids)}), flush=True)
        async for result in client.follow(ids, timeout=timeout, partials=False):
            done += 1
            value = result.value or {}
            line = {
                "query_id": result.query_id,
                "text": value.get("text"),
                "ok": result.ok,
                "seconds": round(time.monotonic() - began, 3),
                "at": round(time.time(), 3),
            }
            print(json.dumps(line), flush=True)
    print(json.dumps({"done": done, "seconds": round(time.monotonic() - began, 3)}), flush=True)


async def _dump(ref: str, bootstrap: str) -> None:
    topology = load_app(ref).topology()
    transport = KafkaTransport(bootstrap)
    codec = MessageCodec()
    outputs = set(topology.output_topics().values())
    records: dict[str, list[list[Any]]] = {t: [] for t in outputs}
    counts: dict[str, int] = {}
    for topic in topology.topic_names():
        reader = transport.reader([topic])
        await reader.start()
        try:
            counts[topic] = 0
            while not await reader.end_reached():
                for record in await reader.fetch(0.5, 1000):
                    counts[topic] += 1
                    if topic in outputs:
                        env = codec.decode(record.value, record.headers)
                        records[topic].append([env.ancestry.id, env.ancestry.depth, env.value])
        finally:
            await reader.stop()
    print(json.dumps({"records": records, "counts": counts}))


def main(argv: list[str] | None = None) -> None:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hosts_app")
    parser.add_argument("command", choices=["push", "dump"])
    parser.add_argument("--app", required=True, help="module:attribute of the app")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--docs", help="JSON lines, one query each (push)")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    if args.command == "push":
        with open(args.docs) as handle:
            queries = [json.loads(line) for line in handle if line.strip()]
        asyncio.run(_push(args.app, args.bootstrap, queries, args.partitions, args.timeout))
    else:
        asyncio.run(_dump(args.app, args.bootstrap))


if __name__ == "__main__":
    main(sys.argv[1:])
