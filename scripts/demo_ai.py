"""The AI demo's driver: push questions to the rag app and show its work as it happens.

Reads the app's topics while the questions run and prints, per question, the
documents retrieved, the sentences picked, each answer sentence the moment it
is generated (the partial results) and the final answer; then a summary.
Prints the first question's id last (for ``alto-stream trace``).

    python scripts/demo_ai.py --app workers.rag:app "Where does the Nile flow?" ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from alto_stream.client import Client
from alto_stream.message import MessageCodec
from alto_stream.ops.loading import load_topology
from alto_stream.runtime.kafka import KafkaTransport

# Piped (make demo tees it) gets wide lines instead of rich's 80 columns.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 150)


def _short(text: str, words: int = 18) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")


async def run(app_ref: str, questions: list[str], timeout: float) -> int:
    _, topology = load_topology(app_ref)
    bootstrap = os.environ.get("ALTO_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    transport = KafkaTransport(bootstrap, client_id="alto-demo")
    shown = ("retrieve", "best_per_query", "generate", "answer")
    topics = {topology.plan(stage).output_topic: stage for stage in shown}
    codec = MessageCodec()
    began = time.time()
    first_sentence: dict[str, float] = {}
    finals: dict[str, dict[str, Any]] = {}
    async with Client(topology, transport) as client:
        ids = await client.push_many([{"text": q} for q in questions])
        label = {qid: f"q{i + 1}" for i, qid in enumerate(ids)}
        for qid, question in zip(ids, questions, strict=True):
            console.print(f"[bold]{label[qid]}[/] pushed: {question}  [dim](id {qid})[/]")
        reader = transport.reader(list(topics), start_time=began - 1.0)
        await reader.start()
        try:
            while len(finals) < len(ids):
                if time.time() - began > timeout:
                    console.print(
                        f"[red]demo: {len(ids) - len(finals)} questions not done "
                        f"after {timeout:.0f} s[/]"
                    )
                    return 1
                for record in await reader.fetch(0.5, 500):
                    env = codec.decode(record.value, record.headers)
                    qid = env.ancestry.query_id
                    if qid not in label or env.value is None:
                        if qid in label and env.ancestry.kind.name in ("ERROR", "TIMEOUT"):
                            console.print(f"{label[qid]} [red]{env.ancestry.reason}[/]")
                            if env.ancestry.depth == 0:
                                finals[qid] = {"error": env.ancestry.reason}
                        continue
                    at = record.timestamp - began
                    _show(topics[record.topic], label[qid], env.value, at, first_sentence, qid)
                    if topics[record.topic] == "answer":
                        finals[qid] = json.loads(env.value["json"]) | {"latency": at}
        finally:
            await reader.stop()
    _summary(ids, questions, label, finals, first_sentence)
    print(ids[0])  # the last line: the id the shell script traces
    return 0


def _show(
    stage: str, who: str, value: dict[str, Any], at: float, first: dict[str, float], qid: str
) -> None:
    stamp = f"[dim]{at:6.1f}s[/] {who}"
    if stage == "retrieve":
        doc = json.loads(value["json"])
        console.print(f"{stamp} retrieved  [cyan]{doc['title']}[/]")
    elif stage == "best_per_query":
        picked = json.loads(value["json"])["context"]
        for s in picked:
            console.print(
                f"{stamp} context    ({s['score']:.2f}) {s['title']}: {_short(s['sentence'])}"
            )
    elif stage == "generate":
        first.setdefault(qid, at)
        console.print(f"{stamp} [green]answer ...[/] {value['text']}")
    elif stage == "answer":
        console.print(f"{stamp} [bold green]final[/]      {json.loads(value['json'])['answer']}")


def _summary(
    ids: list[str],
    questions: list[str],
    label: dict[str, str],
    finals: dict[str, dict[str, Any]],
    first: dict[str, float],
) -> None:
    table = Table(title="demo: summary (seconds from the push)")
    for column in ("", "question", "first sentence", "final", "sources", "answer"):
        table.add_column(column)
    for qid, question in zip(ids, questions, strict=True):
        report = finals.get(qid, {})
        table.add_row(
            label[qid],
            question,
            f"{first[qid]:.1f}" if qid in first else "-",
            f"{report['latency']:.1f}" if "latency" in report else "-",
            ", ".join(report.get("sources", [])),
            _short(report.get("answer") or report.get("error") or "", 30),
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", nargs="+")
    parser.add_argument("--app", default="workers.rag:app")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args.app, args.questions, args.timeout)))


if __name__ == "__main__":
    main()
