"""``worker`` and ``up`` as real processes: start, serve metrics, restart, stop on signals."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner
from word_app import APP

from alto_stream.cli import app as cli
from alto_stream.client import Client
from alto_stream.ops.loading import load_app
from alto_stream.ops.metrics import read_stats
from alto_stream.runtime.kafka import KafkaTransport
from alto_stream.testing import free_ports

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Setup:
    """A three-stage app in a module of its own, and how to run commands for it."""

    ref: str
    folder: Path
    env: dict[str, str]
    bootstrap: str

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "alto_stream.cli", *args],
            env=self.env,
            cwd=self.folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "alto_stream.cli", *args],
            env=self.env,
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def queries(self, docs: list[str], timeout: float = 60) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            async with Client(load_app(self.ref), KafkaTransport(self.bootstrap)) as client:
                finals = await client.run([{"text": d} for d in docs], timeout=timeout)
            return {q: r.value for q, r in finals.items()}

        return asyncio.run(go())


@pytest.fixture
def setup(
    kafka_bootstrap: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    unique_name: Callable[[str], str],
) -> Setup:
    name = unique_name("cliproc")
    module = "m_" + name.replace("-", "_")
    (tmp_path / f"{module}.py").write_text(APP.format(name=name))
    monkeypatch.syspath_prepend(str(tmp_path))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "ALTO_BOOTSTRAP_SERVERS": kafka_bootstrap,
    }
    return Setup(f"{module}:app", tmp_path, env, kafka_bootstrap)


def _apply(setup: Setup) -> None:
    result = CliRunner().invoke(
        cli, ["topics", "apply", setup.ref], env={"ALTO_BOOTSTRAP_SERVERS": setup.bootstrap}
    )
    assert result.exit_code == 0, result.output


def _wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _stop(process: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str, str]:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def test_worker_runs_a_stage_serves_metrics_and_stops_on_sigterm(setup: Setup) -> None:
    _apply(setup)
    port, stats = free_ports(host="0.0.0.0"), setup.folder / "words.json"
    began = time.monotonic()
    worker = setup.start("worker", setup.ref, "words", "--metrics-port", str(port),
                         "--stats-file", str(stats))  # fmt: skip
    try:
        _wait(lambda: read_stats(stats), 30, "the worker's first stats")
        started = time.monotonic() - began
        _, topology = load_app(setup.ref), load_app(setup.ref).topology()

        async def push() -> None:
            async with Client(topology, KafkaTransport(setup.bootstrap)) as client:
                await client.push_many([{"text": "a b c"}])

        asyncio.run(push())
        data = _wait(
            lambda: (s := read_stats(stats)) and s["consumed"] >= 1 and s["produced"] >= 3 and s,
            30,
            "the worker to split the query",
        )
        assert data["stage"] == "words"
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        assert b'alto_records_in_total{app="' in body
        assert b'stage="words"} 1.0' in body
    finally:
        code, _, err = _stop(worker)
    assert code == 0, err
    assert started < 20  # reported below; generous for a loaded 2-core machine
    print(f"worker ready (stats written) {started:.2f}s after exec")


def test_worker_bad_usage_exits_2(setup: Setup) -> None:
    runner, env = CliRunner(), {"ALTO_BOOTSTRAP_SERVERS": setup.bootstrap}
    result = runner.invoke(cli, ["worker", setup.ref, "nope"], env=env)
    assert result.exit_code == 2
    assert "has no stage 'nope'; its stages are: words, shout, joined" in result.stderr
    result = runner.invoke(cli, ["worker", "no_such_module_w:app", "shout"], env=env)
    assert result.exit_code == 2
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        port = busy.getsockname()[1]
        result = runner.invoke(cli, ["up", setup.ref, "--metrics-base-port", str(port)], env=env)
    assert result.exit_code == 2
    # ports after ours may be busy too (other processes on the machine): ours is named first
    assert re.search(rf"metrics ports {port}(, \d+)* are in use", result.stderr), result.stderr
    result = runner.invoke(cli, ["up", setup.ref, "--replicas", "nope=2"], env=env)
    assert result.exit_code == 2
    assert "no stage 'nope'" in result.stderr
    # as a process, the way a supervisor or a container starts it
    result = setup.run("worker", setup.ref, "shout")  # its topics were never created
    assert result.returncode == 2
    assert "needs topics that do not exist" in result.stderr
    env = {**setup.env, "ALTO_CONNECT_TIMEOUT": "0.3"}
    argv = [sys.executable, "-m", "alto_stream.cli", "worker", setup.ref, "words"]
    unreachable = subprocess.run(
        [*argv, "-b", "127.0.0.1:1"], env=env, capture_output=True, text=True, timeout=30
    )
    assert unreachable.returncode == 2
    assert "Kafka does not answer" in unreachable.stderr


def test_worker_replicas_run_as_child_processes(setup: Setup) -> None:
    _apply(setup)
    worker = setup.start("worker", setup.ref, "shout", "--replicas", "2")
    children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children")
    try:
        pids = _wait(lambda: children.read_text().split() if children.exists() else [], 20, "kids")
        _wait(lambda: len(children.read_text().split()) == 2, 20, "two workers")
        pids = children.read_text().split()
    finally:
        code, _, err = _stop(worker)
    assert code == 0, err
    assert "supervising 2 workers of stage shout" in err
    assert all(not Path(f"/proc/{pid}").exists() or _zombie(pid) for pid in pids)


def _zombie(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_up_runs_the_app_restarts_a_killed_worker_and_stops_cleanly(setup: Setup) -> None:
    logs, port = setup.folder / "run", free_ports(4, host="0.0.0.0")
    up = setup.start("up", setup.ref, "--replicas", "shout=2", "--json", "--log-dir", str(logs),
                     "--metrics-base-port", str(port), "--duration", "120")  # fmt: skip
    try:
        names = ["words-0", "shout-0", "shout-1", "joined-0"]
        _wait(lambda: all(read_stats(logs / f"{n}.json") for n in names), 60, "every worker")
        docs = ["hello big world", "one", "a b c d e f"]
        finals = setup.queries(docs)
        assert sorted(v["text"] for v in finals.values()) == sorted(d.upper() for d in docs)
        victim = _wait(lambda: read_stats(logs / "shout-1.json"), 20, "shout-1's stats")
        os.kill(victim["pid"], signal.SIGKILL)
        _wait(
            lambda: (s := read_stats(logs / "shout-1.json")) and s["pid"] != victim["pid"],
            30,
            "shout-1 to be restarted",
        )
        # metrics: one port per worker, from the base port (words-0, shout-0, shout-1, joined-0)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port + 2}/metrics", timeout=5).read()
        assert b'replica="1",stage="shout"' in body
    finally:
        code, out, err = _stop(up)
    assert code == 0, err
    summary = json.loads(out)
    stages = summary["stages"]
    assert list(stages) == ["words", "shout", "joined"]
    assert stages["shout"]["replicas"] == 2
    assert stages["shout"]["restarts"] == 1
    assert stages["words"]["consumed"] == 3
    assert stages["joined"]["lag"] == 0
    assert any("shout-1 exited with status -9" in e for e in summary["events"])
    assert "created topic" in err
    assert (logs / "shout-1.log").exists()


def test_up_whose_workers_are_all_refused_stops_with_status_2(setup: Setup) -> None:
    # Found by a new user scripting `up`: every worker refused (here ALTO_ADMISSION=abc),
    # none restarted, and `up --duration 60 --json` ran its full minute with no worker,
    # exited 0, and told stderr nothing until then (the events only in the JSON).
    env = {**setup.env, "ALTO_ADMISSION": "abc"}
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "alto_stream.cli", "up", setup.ref, "--json", "--duration", "60",
         "--log-dir", str(setup.folder / "run")],
        env=env, cwd=setup.folder, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert time.monotonic() - began < 45
    assert "exited with status 2" in done.stderr and "not restarted" in done.stderr
    assert "so the app cannot run" in done.stderr
    summary = json.loads(done.stdout)
    assert all("exited with status 2" in e for e in summary["events"])
