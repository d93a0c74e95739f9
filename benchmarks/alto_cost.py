"""Per-query orchestration cost of alto-stream in CPU ms, against LangGraph's (durable vs durable).

``python -m benchmarks.alto_cost --apps rag,fanout --queries 100 --broker-pid PID``

Each app runs as ``alto-stream up`` worker processes on Kafka with the scripted
components of :mod:`benchmarks.langgraph.doubles` (a model, a retriever and an
embedder that cost next to nothing), so that the CPU the processes spend is the
orchestration's: records encoded, written, fetched, decoded, ancestry, commits,
aggregation state. Queries go one after the other (as ``benchmarks.langgraph.measure
cost`` sends them to LangGraph), after a warm-up. Reported per query:

- ``workers_ms``: CPU of every worker process (from ``/proc``), minus the app's steps
  called directly (``direct_ms``, the same base the LangGraph figures subtract);
- ``client_ms``: the pushing and result-reading process;
- ``broker_ms``: the Kafka broker's CPU (``--broker-pid``): what makes alto-stream durable,
  as the SQLite checkpointer makes LangGraph durable. Only with ``--broker-pid``.

Linux only (``/proc``). The broker's CPU includes whatever else it serves meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from alto_stream import App
from alto_stream.settings import bootstrap_servers
from benchmarks.langgraph.doubles import ScriptedEmbedder, ScriptedLLM, ScriptedSearch
from benchmarks.langgraph.measure import QUESTION
from benchmarks.langgraph.system import Parts
from benchmarks.systems.alto import AltoSystem
from benchmarks.systems.base import BenchConfig

__all__ = ["main", "measure", "scripted_app"]

_TICK = os.sysconf("SC_CLK_TCK")


def scripted_app(app: str, name: str) -> App:
    """``workers.<app>`` built under ``name`` with the scripted model, retriever and embedder."""
    module = importlib.import_module(f"workers.{app}")
    kwargs: dict[str, Any] = {"llm": ScriptedLLM(app), "searcher": ScriptedSearch()}
    if app == "rag":
        kwargs["embedder"] = ScriptedEmbedder()
    built: App = module.build(name, **kwargs)
    return built


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _children(pid: int) -> list[int]:
    """The child processes of ``pid``."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


class _ScriptedAlto(AltoSystem):
    """The alto system with the scripted components (the app reference names them)."""

    def __init__(self, config: BenchConfig, bootstrap: str) -> None:
        super().__init__(config, bootstrap)
        self.app_ref = f"benchmarks.alto_cost:scripted_app({config.app!r}, {self.app_name!r})"

    def command(self, ready_file: Path) -> list[str]:
        """``up`` without ``--llm``: the app brings its scripted model (no server to name)."""
        cmd = super().command(ready_file)
        at = cmd.index("--llm")
        return cmd[:at] + cmd[at + 2 :]

    def environment(self) -> dict[str, str]:
        """The bench's environment without an LLM backend (the app brings its own)."""
        env = super().environment()
        env.pop("ALTO_LLM_BACKEND", None)
        return env

    def workers(self) -> list[int]:
        """The pids of the worker processes ``up`` started."""
        return _children(self._process.pid) if self._process is not None else []


async def _direct_cpu(app: str, n: int) -> float:
    module = importlib.import_module(f"benchmarks.langgraph.{app}")
    parts = Parts(ScriptedLLM(app), ScriptedSearch(), ScriptedEmbedder())
    for _ in range(10):
        await module.direct(parts, QUESTION[app])
    began = time.process_time()
    for _ in range(n):
        await module.direct(parts, QUESTION[app])
    return (time.process_time() - began) / n


async def measure(
    app: str, n: int, bootstrap: str, broker_pid: int | None, warmup: int = 20
) -> dict[str, Any]:
    """One app's row: CPU ms per query of the workers, the client and the broker."""
    direct = await _direct_cpu(app, n)
    with tempfile.TemporaryDirectory() as workdir:
        config = BenchConfig(app=app, workdir=workdir)  # the app brings its own components
        system = _ScriptedAlto(config, bootstrap)
        await system.start()
        try:
            for i in range(warmup):
                await system.run(f"warm-{i}-{uuid.uuid4().hex[:6]}", QUESTION[app], lambda: None)
            workers = system.workers()
            before = sum(_cpu(p) for p in workers)
            broker_before = _cpu(broker_pid) if broker_pid else 0.0
            client_before = time.process_time()
            began = time.monotonic()
            for i in range(n):
                await system.run(f"q-{i}-{uuid.uuid4().hex[:6]}", QUESTION[app], lambda: None)
            wall = time.monotonic() - began
            client = time.process_time() - client_before
            spent = sum(_cpu(p) for p in workers) - before
            broker = (_cpu(broker_pid) - broker_before) if broker_pid else None
        finally:
            await system.close()
    row: dict[str, Any] = {
        "app": app,
        "system": "alto (Kafka, durable)",
        "queries": n,
        "worker_processes": len(workers),
        "direct_ms": round(direct * 1000, 2),
        "workers_ms": round((spent / n - direct) * 1000, 2),
        "client_ms": round(client / n * 1000, 2),
        "broker_ms": None if broker is None else round(broker / n * 1000, 2),
        "latency_ms": round(wall / n * 1000, 1),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    return row


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.alto_cost``: print one JSON row per app."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.alto_cost", description=__doc__)
    parser.add_argument("--apps", default="rag,fanout,factcheck,cove")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--bootstrap", default=None, help="Kafka [ALTO_BOOTSTRAP_SERVERS]")
    parser.add_argument("--broker-pid", type=int, default=None, help="the broker's JVM pid")
    args = parser.parse_args(argv)
    for app in args.apps.split(","):
        row = asyncio.run(
            measure(app, args.queries, bootstrap_servers(args.bootstrap), args.broker_pid)
        )
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
