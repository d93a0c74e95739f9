"""Recovery time after a SIGKILL: from the kill to the dead worker's partitions working again.

Runs a one-stage app (a map) as WORKERS worker processes, pushes a query
every 20 ms, SIGKILLs one worker (and, with ``--restart``, starts it again
after 0.5 s, as ``up``'s supervisor does), and reports the recovery time: the
latest completion, counted from the kill, of the queries pushed in the half
second after it (those on the killed worker's partitions wait for a takeover;
the others take a normal latency). Repeated ``--kills`` times::

    export ALTO_BOOTSTRAP_SERVERS=...
    .venv/bin/python scripts/failover_time.py --kills 3
    .venv/bin/python scripts/failover_time.py --kills 3 --restart --static

``--worker-arg`` passes flags to every ``worker`` command (e.g.
``--worker-arg=--session-timeout=10``); ``--code-root DIR`` runs the workers
from another checkout (to measure the code before a change).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

from alto_stream.client import Client
from alto_stream.ops.loading import load_app
from alto_stream.runtime.kafka import KafkaTransport

ROOT = Path(__file__).resolve().parents[1]

APP = """
import asyncio
from alto_stream import App

app = App({name!r}, input_schema="alto.Text")


@app.map(source=app.input, schema="alto.Text")
async def echo(value):
    await asyncio.sleep(0.005)
    return value
"""


class _Workers:
    def __init__(self, ref: str, folder: Path, args: argparse.Namespace) -> None:
        self.ref, self.folder, self.args = ref, folder, args
        code_root = str(Path(args.code_root).resolve()) if args.code_root else str(ROOT)
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join([code_root, str(folder)])}
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, replica: int) -> None:
        argv = [sys.executable, "-m", "alto_stream.cli", "worker", self.ref, "echo"]
        argv += [*self.args.worker_arg, "--replica-id", str(replica)]
        if self.args.static:
            argv += ["--instance-id", f"echo.{replica}"]
        log = (self.folder / f"echo-{replica}.log").open("ab")
        self.procs[replica] = subprocess.Popen(
            argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.folder
        )

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _one_kill(client: Client, workers: _Workers, victim: int, restart: bool) -> float:
    loop = asyncio.get_running_loop()
    pushed: dict[str, float] = {}
    done: dict[str, float] = {}

    async def follow() -> None:
        while True:
            ids = [q for q in pushed if q not in done]
            if not ids:
                await asyncio.sleep(0.05)
                continue
            async for result in client.follow(ids, timeout=60, partials=False):
                done[result.query_id] = loop.time()

    async def push(seconds: float) -> None:
        end = loop.time() + seconds
        while loop.time() < end:
            (query_id,) = await client.push_many([{"text": "q"}])
            pushed[query_id] = loop.time()
            await asyncio.sleep(0.02)

    await push(3.0)  # steady state first
    workers.procs[victim].kill()
    workers.procs[victim].wait()
    killed = loop.time()
    pusher = asyncio.create_task(push(0.5))
    if restart:
        await asyncio.sleep(0.5)
        workers.start(victim)
    await pusher
    after = [q for q, at in pushed.items() if at >= killed]
    follower = asyncio.create_task(follow())
    deadline = loop.time() + 120
    while any(q not in done for q in after) and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    follower.cancel()
    if any(q not in done for q in after):
        return float("inf")
    if not restart:
        workers.start(victim)  # back to full strength for the next round
    await asyncio.sleep(args_settle)
    return max(done[q] for q in after) - killed


args_settle = 8.0


async def main(args: argparse.Namespace) -> dict[str, object]:
    folder = Path(tempfile.mkdtemp(prefix="failover-"))
    module = f"failover_{uuid.uuid4().hex[:8]}"
    (folder / f"{module}.py").write_text(textwrap.dedent(APP.format(name=module.replace("_", "-"))))
    sys.path.insert(0, str(folder))
    app = load_app(f"{module}:app")
    transport = KafkaTransport()
    await transport.ensure_topics(app.topology().topic_specs(partitions=args.partitions))
    workers = _Workers(f"{module}:app", folder, args)
    for replica in range(args.workers):
        workers.start(replica)
    recoveries = []
    try:
        async with Client(app, transport) as client:
            await asyncio.sleep(10.0)  # the group settles
            for i in range(args.kills):
                recoveries.append(
                    round(await _one_kill(client, workers, i % args.workers, args.restart), 2)
                )
    finally:
        workers.stop()
    return {
        "recovery_seconds": recoveries,
        "median": statistics.median(recoveries),
        "restart": args.restart,
        "static": args.static,
        "worker_args": args.worker_arg,
        "logs": str(folder),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--restart", action="store_true", help="restart the killed worker")
    parser.add_argument("--static", action="store_true", help="workers get instance ids")
    parser.add_argument("--code-root", default=None)
    parser.add_argument("--worker-arg", action="append", default=[])
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
