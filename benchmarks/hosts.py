"""Throughput with 1, 2 and 3 replicas of the bottleneck stage, each on its own host.

``python -m benchmarks.hosts [--docs N] [--words W] [--delay S] [--in-flight K]
[--repeat R] [--delivery MODE] [--json]`` (as root: it makes network
namespaces, see :mod:`benchmarks.netns`). The broker runs in host 4
(``broker start --host 10.251.0.4``); ``words`` and ``joined`` run on host 1;
``shout``, the bottleneck, runs with ``r`` replicas: replica ``i`` on host
``i``. ``shout`` waits ``delay`` seconds per word with at most ``in_flight``
words in flight per worker: an I/O-bound stage (a call to a model server that
serves ``in_flight`` requests at a time), so one replica's ceiling is
``in_flight / delay`` words/s whatever the CPU, and adding hosts adds that
much capacity. (A CPU-bound stage could not show it honestly here: the
namespaces share this machine's cores.)

Every run uses a fresh app (its own topics and groups, 6 partitions). A
warm-up batch of queries goes through first (all workers joined, connections
made); then ``docs`` queries of ``words`` words are pushed from host 1 and
followed: words/s = words / (last final - push).

:class:`Deployment` and :class:`Pusher` are shared with
``tests/integration/test_hosts_kafka.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from benchmarks import netns

__all__ = ["Deployment", "Pusher", "app_module", "broker_on", "main"]

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
PARTITIONS = 6  # hosts_app push's default: the topics it would create
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]


def docs_of(count: int, words: int, salt: str = "") -> list[dict[str, str]]:
    """``count`` queries of ``words`` distinct-looking words each."""
    return [
        {"text": " ".join(f"{WORDS[(i + j) % len(WORDS)]}{salt}{i}" for j in range(words))}
        for i in range(count)
    ]


@contextlib.contextmanager
def broker_on(net: netns.Hosts, host: int, data_dir: Path) -> Iterator[str]:
    """A one-node broker on ``host``, listening on and advertising its address; yields it."""
    address = net.address(host)
    argv = [PY, "-m", "alto_stream.cli", "broker", "start", "--host", address, "--port", "0"]
    started = net.run(host, [*argv, "--data-dir", str(data_dir)], cwd=ROOT, timeout=240)
    server = started.stdout.strip().splitlines()[-1]
    if not server.startswith(f"{address}:"):
        raise RuntimeError(f"broker start printed {started.stdout!r}, not {address}:PORT")
    try:
        yield server
    finally:
        net.run(host, [PY, "-m", "alto_stream.cli", "broker", "stop", "--data-dir", str(data_dir)])


def app_module(path: Path, name: str, delay: float, in_flight: int) -> str:
    """Write a module whose ``app`` is ``hosts_app.build(name, ...)``; return its name."""
    module = f"hostsapp_{name.replace('-', '_')}"
    source = "from benchmarks.hosts_app import build\n"
    source += f"app = build({name!r}, delay={delay}, in_flight={in_flight})\n"
    (path / f"{module}.py").write_text(source)
    return module


class Pusher:
    """A client process (``hosts_app push``) whose JSON lines are read as they come."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []
        self.other: list[str] = []
        self.began_at = time.time()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            text = raw.decode(errors="replace").strip()
            try:
                self.lines.append(json.loads(text))
            except ValueError:
                self.other.append(text)

    def finals(self) -> list[dict[str, Any]]:
        """The final results so far."""
        return [line for line in self.lines if "query_id" in line]

    def wait(self, timeout: float) -> dict[str, Any]:
        """Wait for the end; the ``{"done": n, "seconds": s}`` line (raises when it failed)."""
        self.proc.wait(timeout=timeout)
        self.thread.join(timeout=10)
        done = [line for line in self.lines if "done" in line]
        if self.proc.returncode != 0 or not done:
            raise RuntimeError(
                f"the client exited {self.proc.returncode}:\n" + "\n".join(self.other[-40:])
            )
        return done[0]


class Deployment:
    """Worker processes on hosts, and clients, all inside the hosts' namespaces."""

    def __init__(
        self, net: netns.Hosts, bootstrap: str, path: Path, module: str, delivery: str
    ) -> None:
        self.net = net
        self.bootstrap = bootstrap
        self.path = path
        self.ref = f"{module}:app"
        self.delivery = delivery
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(path), str(ROOT)]),
            "ALTO_BOOTSTRAP_SERVERS": bootstrap,
        }
        self.workers: dict[tuple[int, str], subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []
        self._applied = False

    def start(self, placement: dict[int, tuple[str, ...]]) -> None:
        """Start one worker process per (host, stage) of ``placement``.

        The app's topics are created first, as docs/hosts.md says: a worker whose
        topics do not exist yet exits 2 (the push that also creates them ran at
        the same time, and a worker that checked first failed a CI run).
        """
        if not self._applied:
            host = next(iter(placement))
            argv = [PY, "-m", "alto_stream.cli", "topics", "apply", self.ref]
            argv += ["--partitions", str(PARTITIONS), "--bootstrap-servers", self.bootstrap]
            self.net.run(host, argv, env=self.env, cwd=ROOT, timeout=120)
            self._applied = True
        for host, stages in placement.items():
            for stage in stages:
                log = open(self.path / f"h{host}-{stage}.log", "ab")  # noqa: SIM115
                self._logs.append(log)
                argv = [PY, "-m", "alto_stream.cli", "worker", self.ref, stage]
                argv += ["--delivery", self.delivery, "--bootstrap-servers", self.bootstrap]
                self.workers[(host, stage)] = self.net.popen(
                    host, argv, env=self.env, cwd=ROOT, stdout=log
                )

    def exited(self) -> list[str]:
        """Workers that exited on their own, with the end of their logs."""
        out = []
        for (host, stage), proc in self.workers.items():
            if proc.poll() is not None:
                tail = (self.path / f"h{host}-{stage}.log").read_text(errors="replace")[-2000:]
                out.append(f"worker {stage} on host {host} exited {proc.returncode}:\n{tail}")
        return out

    def stop(self) -> None:
        """SIGTERM every worker; SIGKILL one that has not stopped after 30 s."""
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.workers.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self._logs:
            log.close()

    def push(self, host: int, docs: list[dict[str, str]], *, name: str = "docs") -> Pusher:
        """Push ``docs`` from ``host`` and follow them (creates the app's topics first)."""
        file = self.path / f"{name}.jsonl"
        file.write_text("".join(json.dumps(d) + "\n" for d in docs))
        argv = [PY, "-m", "benchmarks.hosts_app", "push", "--app", self.ref]
        argv += ["--bootstrap", self.bootstrap, "--docs", str(file), "--timeout", "400"]
        proc = self.net.popen(host, argv, env=self.env, cwd=ROOT, stdout=subprocess.PIPE)
        return Pusher(proc)

    def dump(self, host: int) -> dict[str, Any]:
        """Every topic of the app, read from ``host`` (see ``hosts_app dump``)."""
        argv = [PY, "-m", "benchmarks.hosts_app", "dump", "--app", self.ref]
        argv += ["--bootstrap", self.bootstrap]
        out = self.net.run(host, argv, env=self.env, cwd=ROOT, timeout=300).stdout
        dumped: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return dumped


def _one_run(
    net: netns.Hosts, bootstrap: str, path: Path, args: argparse.Namespace, replicas: int
) -> dict[str, Any]:
    name = f"hb-{replicas}-{uuid.uuid4().hex[:8]}"
    module = app_module(path, name, args.delay, args.in_flight)
    deployment = Deployment(net, bootstrap, path, module, args.delivery)
    placement: dict[int, tuple[str, ...]] = {1: ("words", "joined")}
    for host in range(1, replicas + 1):
        placement[host] = (*placement.get(host, ()), "shout")
    deployment.start(placement)
    try:
        warm = deployment.push(1, docs_of(2 * replicas * args.in_flight, 2, "w"), name="warm")
        warm.wait(timeout=400)
        docs = docs_of(args.docs, args.words)
        done = deployment.push(1, docs, name=f"docs-{replicas}").wait(timeout=600)
        exited = deployment.exited()
        if exited:
            raise RuntimeError("\n".join(exited))
    finally:
        deployment.stop()
    if done["done"] != len(docs):
        raise RuntimeError(f"only {done['done']} of {len(docs)} queries finished")
    words = args.docs * args.words
    return {
        "replicas": replicas,
        "seconds": done["seconds"],
        "words_per_s": words / done["seconds"],
    }


def _run(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    with netns.hosts(4) as net, tempfile.TemporaryDirectory(prefix="alto-hosts-") as tmp:
        path = Path(tmp)
        with broker_on(net, 4, path / "broker") as bootstrap:
            runs: dict[int, list[dict[str, Any]]] = {r: [] for r in args.replicas}
            for _ in range(args.repeat):
                for replicas in args.replicas:
                    runs[replicas].append(_one_run(net, bootstrap, path, args, replicas))
            for replicas, got in runs.items():
                rates = [r["words_per_s"] for r in got]
                rows.append(
                    {
                        "replicas": replicas,
                        "hosts": f"shout on host(s) 1..{replicas}",
                        "words_per_s": round(statistics.median(rates), 1),
                        "min": round(min(rates), 1),
                        "max": round(max(rates), 1),
                        "ceiling": round(replicas * args.in_flight / args.delay, 1),
                        "seconds": [r["seconds"] for r in got],
                    }
                )
    return rows


def main(argv: list[str] | None = None) -> None:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hosts")
    parser.add_argument("--docs", type=int, default=60, help="queries per run")
    parser.add_argument("--words", type=int, default=10, help="words per query")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds shout waits per word")
    parser.add_argument("--in-flight", type=int, default=2, help="words in flight per shout worker")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--delivery", default="at-least-once")
    parser.add_argument("--json", action="store_true", help="one JSON line instead of a table")
    args = parser.parse_args(argv)
    began = time.monotonic()
    rows = _run(args)
    if args.json:
        print(json.dumps({"rows": rows, "wall_s": round(time.monotonic() - began, 1)}))
        return
    print(
        f"bottleneck: shout, sleep {args.delay} s per word, {args.in_flight} in flight per "
        f"replica; {args.docs} queries x {args.words} words; {args.delivery}; "
        f"median of {args.repeat}"
    )
    print(f"{'replicas':>8} {'words/s':>9} {'min-max':>15} {'ceiling':>8} {'x1':>5}")
    base = rows[0]["words_per_s"]
    for row in rows:
        span = f"{row['min']}-{row['max']}"
        print(
            f"{row['replicas']:>8} {row['words_per_s']:>9} {span:>15} {row['ceiling']:>8} "
            f"{row['words_per_s'] / base:>5.2f}"
        )
    print(f"wall {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
