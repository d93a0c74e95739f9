"""Progress while one replica of every stage is frozen (SIGSTOP), all on this machine.

``python -m benchmarks.freeze [--delivery MODE ...] [--freeze S] [--docs N] [--words W]
[--keep DIR] [--json]`` starts a broker on 127.0.0.1, then for each delivery
mode a fresh ``benchmarks.hosts_app`` app (``shout`` waits 0.2 s per word, 2 at a
time per worker) with three "hosts" of worker processes, each running every
stage. After a warm-up, ``docs`` queries are pushed; when the first final
arrives, host 2's three workers are frozen with SIGSTOP for ``freeze`` seconds
(longer than the 6 s session timeout: the groups hand their partitions to hosts
1 and 3), then resumed with SIGCONT. It prints, per mode, the finals that
arrived while host 2 was frozen, their rate, the rate after the groups had
rebalanced (from ``session timeout + 4 s`` into the freeze on), and how long
the rest took; every final is checked against ``hosts_app.reference``.

It is :mod:`benchmarks.hosts`'s cut without network namespaces (no root): a
frozen process holds its connections open and says nothing, as a cut-off host
does (docs/hosts.md, "A host cut off"; docs/faults.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import netns
from benchmarks.hosts import PY, ROOT, Deployment, app_module, docs_of
from benchmarks.hosts_app import reference

__all__ = ["freeze_run", "main"]

STAGES = ("words", "shout", "joined")
SESSION_TIMEOUT = 6.0
"""The workers' consumer session timeout (``ALTO_SESSION_TIMEOUT``'s default)."""


class _Local(netns.Hosts):
    """Every "host" is this machine's own namespace (only the processes are apart)."""

    def command(self, host: int, argv: Sequence[str]) -> list[str]:
        return list(argv)


def _signal(deployment: Deployment, host: int, sig: int) -> None:
    for (h, _), proc in deployment.workers.items():
        if h == host and proc.poll() is None:
            os.kill(proc.pid, sig)


def freeze_run(
    bootstrap: str,
    path: Path,
    delivery: str,
    *,
    freeze: float = 40.0,
    docs: int = 120,
    words: int = 8,
    delay: float = 0.2,
    in_flight: int = 2,
) -> dict[str, Any]:
    """One run (see the module docstring): the finals during and after the freeze."""
    name = f"fz-{delivery[:2]}-{uuid.uuid4().hex[:6]}"
    module = app_module(path, name, delay, in_flight)
    net = _Local(tag="local", names=["local"] * 3, switch="")
    deployment = Deployment(net, bootstrap, path, module, delivery)
    deployment.start(dict.fromkeys((1, 2, 3), STAGES))
    frozen_at = thawed_at = 0.0
    try:
        deployment.push(1, docs_of(6, 4, "w"), name=f"warm-{name}").wait(timeout=300)
        queries = docs_of(docs, words)
        pusher = deployment.push(1, queries, name=f"docs-{name}")
        while not pusher.finals():
            if pusher.proc.poll() is not None:
                break
            time.sleep(0.05)
        _signal(deployment, 2, signal.SIGSTOP)
        frozen_at = time.time()
        time.sleep(freeze)
        _signal(deployment, 2, signal.SIGCONT)
        thawed_at = time.time()
        done = pusher.wait(timeout=600)
        exited = deployment.exited()
    finally:
        _signal(deployment, 2, signal.SIGCONT)
        deployment.stop()
    finals = pusher.finals()
    wrong = [f for f in finals if f["text"] != reference(queries_text(queries, f))]
    during = [f for f in finals if frozen_at <= f["at"] < thawed_at]
    settled = frozen_at + SESSION_TIMEOUT + 4.0
    after_rebalance = [f for f in during if f["at"] >= settled]
    last = max((f["at"] for f in finals), default=thawed_at)
    return {
        "delivery": delivery,
        "queries": docs,
        "done": done["done"],
        "wrong": len(wrong),
        "before_freeze": sum(f["at"] < frozen_at for f in finals),
        "during_freeze": len(during),
        "finals_per_s_frozen": round(len(during) / freeze, 2),
        "finals_per_s_after_rebalance": round(len(after_rebalance) / (thawed_at - settled), 2),
        "after_thaw": sum(f["at"] >= thawed_at for f in finals),
        "rest_seconds": round(last - thawed_at, 1),
        "exited": exited,
        "app": name,
    }


def queries_text(queries: list[dict[str, str]], final: dict[str, Any]) -> str:
    """The query text of ``final`` (its words carry the query's number)."""
    first = (final["text"] or "").split(" ")[0].lower()
    number = int("".join(ch for ch in first if ch.isdigit()) or -1)
    return queries[number]["text"] if 0 <= number < len(queries) else ""


def main(argv: list[str] | None = None) -> None:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.freeze")
    parser.add_argument("--delivery", nargs="+", default=["at-least-once", "transactional"])
    parser.add_argument("--freeze", type=float, default=40.0, help="seconds host 2 is frozen")
    parser.add_argument("--docs", type=int, default=120)
    parser.add_argument("--words", type=int, default=8)
    parser.add_argument("--keep", type=Path, help="keep the broker and worker logs here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    keep = args.keep
    with tempfile.TemporaryDirectory(prefix="alto-freeze-") as tmp:
        path = keep or Path(tmp)
        path.mkdir(parents=True, exist_ok=True)
        data = path / "broker"
        cli = [PY, "-m", "alto_stream.cli", "broker"]
        started = subprocess.run(
            [*cli, "start", "--data-dir", str(data), "--port", "0"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=240,
            check=True,
        )
        bootstrap = started.stdout.strip().splitlines()[-1]
        try:
            rows = [
                freeze_run(
                    bootstrap, path, mode, freeze=args.freeze, docs=args.docs, words=args.words
                )
                for mode in args.delivery
            ]
        finally:
            subprocess.run([*cli, "stop", "--data-dir", str(data)], cwd=ROOT, timeout=120)
    for row in rows:
        print(json.dumps(row) if args.json else _line(row), flush=True)


def _line(row: dict[str, Any]) -> str:
    return (
        f"{row['delivery']:>14}: {row['during_freeze']:>3} of {row['queries']} finals in the "
        f"freeze ({row['finals_per_s_frozen']}/s; {row['finals_per_s_after_rebalance']}/s once "
        f"rebalanced), {row['before_freeze']} before, the rest {row['rest_seconds']} s after; "
        f"done {row['done']}, wrong {row['wrong']}, exited {len(row['exited'])}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
