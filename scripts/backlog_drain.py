"""Drain a backlog on a busy machine: time, rebalances, member drops (issue 9, item 8).

Pushes QUERIES queries (and BAD undecodable records) onto a fresh app's input
before any worker runs, starts BURNERS CPU-burning processes, then WORKERS
worker processes per stage, and measures how long the backlog takes to drain
(every query's final result) and how often the workers' group membership was
lost on the way. The app's stages are plain ``def`` functions that use the CPU
(run inline by the workers), the kind that can keep the event loop, and with
it the consumer's heartbeats, from running::

    .venv/bin/alto-stream broker start --data-dir .alto/b1 --port 0
    export ALTO_BOOTSTRAP_SERVERS=...
    .venv/bin/python scripts/backlog_drain.py --queries 3000 --bad 300 --burners 3

``--code-root DIR`` runs the workers from another checkout of the package
(to measure the code before a change); ``--worker-arg`` passes flags on to
every ``worker`` command (e.g. ``--worker-arg=--session-timeout=6``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

from alto_stream.client import Client
from alto_stream.ops.loading import load_app
from alto_stream.runtime.kafka import KafkaTransport
from alto_stream.transport import OutRecord

ROOT = Path(__file__).resolve().parents[1]

APP = """
from alto_stream import App

app = App({name!r}, input_schema="alto.Text")


def _burn(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


@app.split(source=app.input, schema="alto.Text")
def words(query):
    return [{{"text": w}} for w in query["text"].split()]


@app.map(source=words, schema="alto.Text")
def crunch(word):
    _burn({work})
    return {{"text": word["text"].upper()}}


@app.aggregate(source=crunch, closes=words, schema="alto.Text")
def join(children):
    return {{"text": " ".join(c.value["text"] for c in children if c.ok)}}
"""

_DROPS = re.compile(
    r"session expired|UnknownMemberId|not recognized|Heartbeat failed|"
    r"CommitFailed|rejoin|member_id was not|commit skipped",
    re.IGNORECASE,
)


def _burner() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def _start_workers(
    module: str, stages: list[str], folder: Path, args: argparse.Namespace
) -> list[subprocess.Popen[bytes]]:
    code_root = str(Path(args.code_root).resolve()) if args.code_root else str(ROOT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([code_root, str(folder)])}
    procs = []
    for stage in stages:
        for replica in range(args.workers):
            argv = [sys.executable, "-m", "alto_stream.cli", "worker", f"{module}:app", stage]
            argv += ["--stats-file", str(folder / f"{stage}-{replica}.json"), *args.worker_arg]
            log = (folder / f"{stage}-{replica}.log").open("wb")
            procs.append(
                subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
            )
    return procs


def _read_logs(folder: Path) -> tuple[dict[str, int], dict[str, object]]:
    """Per worker: lines about lost membership, and assignments received (stats file)."""
    drops: dict[str, int] = {}
    assignments: dict[str, object] = {}
    for log_file in sorted(folder.glob("*.log")):
        drops[log_file.stem] = len(_DROPS.findall(log_file.read_text(errors="replace")))
        stats = folder / f"{log_file.stem}.json"
        if stats.exists():
            assignments[log_file.stem] = json.loads(stats.read_text()).get("rebalances")
    return drops, assignments


async def main(args: argparse.Namespace) -> dict[str, object]:
    folder = Path(tempfile.mkdtemp(prefix="backlog-"))
    module = f"backlog_{uuid.uuid4().hex[:8]}"
    (folder / f"{module}.py").write_text(
        textwrap.dedent(APP.format(name=module.replace("_", "-"), work=args.work))
    )
    sys.path.insert(0, str(folder))
    app = load_app(f"{module}:app")
    topology = app.topology()
    transport = KafkaTransport()
    await transport.ensure_topics(topology.topic_specs(partitions=args.partitions))
    rng = random.Random(args.seed)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
    queries = [
        {"text": " ".join(rng.choice(words) for _ in range(args.words))}
        for _ in range(args.queries)
    ]
    async with Client(app, transport) as client:
        producer = transport.producer()
        await producer.start()
        bad = [
            OutRecord(topology.input_topic, rng.randbytes(rng.randint(1, 200)), (), None)
            for _ in range(args.bad)
        ]
        await producer.send_many(bad)
        await producer.stop()
        ids = await client.push_many(queries)
        burners = [_burner() for _ in range(args.burners)]
        started = time.monotonic()
        procs = _start_workers(module, list(topology.stages), folder, args)
        finals = 0
        try:
            async for _ in client.follow(ids, timeout=args.timeout, partials=False):
                finals += 1
        finally:
            drained = time.monotonic() - started
            for burner in burners:
                burner.kill()
                burner.wait()
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    drops, rebalances = _read_logs(folder)
    return {
        "queries": args.queries,
        "bad": args.bad,
        "finals": finals,
        "drain_seconds": round(drained, 1),
        "burners": args.burners,
        "membership_trouble_lines": drops,
        "assignments_per_worker": rebalances,
        "logs": str(folder),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--bad", type=int, default=300)
    parser.add_argument("--words", type=int, default=6)
    parser.add_argument("--work", type=int, default=40_000, help="loop steps per word")
    parser.add_argument("--burners", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--code-root", default=None)
    parser.add_argument("--worker-arg", action="append", default=[])
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
