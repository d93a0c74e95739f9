"""`up --ready-file`: written once every worker has its partitions; a query pushed then is quick.

And `up` ends without "Unclosed AIOKafka..." warnings (its lag queries are
never cancelled half-way).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from word_app import APP

from alto_stream.client import Client
from alto_stream.ops.loading import load_app
from alto_stream.ops.metrics import read_stats
from alto_stream.runtime.kafka import KafkaTransport

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]


def test_up_says_when_every_worker_is_assigned(
    kafka_bootstrap: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    unique_name: Callable[[str], str],
) -> None:
    name = unique_name("ready")
    module = "m_" + name.replace("-", "_")
    (tmp_path / f"{module}.py").write_text(APP.format(name=name))
    monkeypatch.syspath_prepend(str(tmp_path))
    ref, logs, ready = f"{module}:app", tmp_path / "run", tmp_path / "ready.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "ALTO_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PYTHONWARNINGS": "default",  # ResourceWarnings (unclosed clients) shown, not hidden
    }
    argv = [sys.executable, "-m", "alto_stream.cli", "up", ref, "--replicas", "shout=2", "--json",
            "--log-dir", str(logs), "--ready-file", str(ready), "--duration", "150"]  # fmt: skip
    up = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert up.poll() is None, up.communicate()
            assert time.monotonic() < deadline, "up never said ready"
            time.sleep(0.1)
        # When it says so, every worker reports its partitions: 3 per stage, shout's spread.
        stats = {n: read_stats(logs / f"{n}.json") for n in ("words-0", "shout-0", "shout-1")}
        assert all(s is not None and s["assigned"] for s in stats.values()), stats
        assert json.loads(ready.read_text())["ready_after"] > 0

        async def query() -> dict[str, object]:
            async with Client(load_app(ref), KafkaTransport(kafka_bootstrap)) as client:
                finals = await client.run([{"text": "ready set go"}], timeout=60)
            return {q: r.value for q, r in finals.items()}

        assert list(asyncio.run(query()).values()) == [{"text": "READY SET GO"}]
    finally:
        up.send_signal(signal.SIGTERM)
        out, err = up.communicate(timeout=60)
    assert up.returncode == 0, err
    assert "ready: every worker has its partitions" in err
    assert "Unclosed" not in err, err
    summary = json.loads(out)
    assert summary["ready_after"] > 0


def test_up_beside_workers_of_another_host_says_ready(
    kafka_bootstrap: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    unique_name: Callable[[str], str],
) -> None:
    # docs/hosts.md's recipe, as a new user ran it: topics with 6 partitions, a
    # `worker` of one stage elsewhere, then `up`. Before: 8 "topic ... differs:
    # partitions: want 3, has 6" warnings, and up never said ready (its workers
    # never held all of the shared stage's partitions).
    name = unique_name("shared")
    module = "m_" + name.replace("-", "_")
    (tmp_path / f"{module}.py").write_text(APP.format(name=name))
    monkeypatch.syspath_prepend(str(tmp_path))
    ref, ready = f"{module}:app", tmp_path / "ready.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "ALTO_BOOTSTRAP_SERVERS": kafka_bootstrap,
    }
    cli = [sys.executable, "-m", "alto_stream.cli"]
    applied = subprocess.run([*cli, "topics", "apply", ref, "--partitions", "6"], env=env,
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    elsewhere = subprocess.Popen(
        [*cli, "worker", ref, "shout"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    up = subprocess.Popen([*cli, "up", ref, "--log-dir", str(tmp_path / "run"), "--ready-file",
                           str(ready), "--duration", "150"], env=env, cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert up.poll() is None, up.communicate()
            assert time.monotonic() < deadline, "up never said ready"
            time.sleep(0.2)
    finally:
        up.send_signal(signal.SIGTERM)
        _, err = up.communicate(timeout=60)
        elsewhere.send_signal(signal.SIGTERM)
        elsewhere.communicate(timeout=60)
    assert up.returncode == 0, err
    assert "differs" not in err, err
    assert "topics have 6 partitions, not the 3 up would create: used as they are" in err
    assert "the rest of their groups' partitions are held outside this up" in err


def test_two_ups_with_static_membership_on_two_hosts_keep_their_workers(
    kafka_bootstrap: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    unique_name: Callable[[str], str],
) -> None:
    # Found by a new user: two `up --static-membership` of one app (two hosts) gave
    # their workers the same ids; each pair took each other's place, one exited 2
    # ("uses group instance id"), and `up` restarted it for ever (7-8 times a stage
    # in 4 min). Each host's `up` now has ids of its own (--host-id, as two hosts'
    # names would differ), and neither loses a worker.
    name = unique_name("static2")
    module = "m_" + name.replace("-", "_")
    (tmp_path / f"{module}.py").write_text(APP.format(name=name))
    monkeypatch.syspath_prepend(str(tmp_path))
    ref = f"{module}:app"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "ALTO_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ALTO_HOME": str(tmp_path / "home"),
    }
    cli = [sys.executable, "-m", "alto_stream.cli"]
    applied = subprocess.run([*cli, "topics", "apply", ref, "--partitions", "4"], env=env,
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    ups, ready = {}, {}
    for host in ("host-a", "host-b"):
        ready[host] = tmp_path / f"{host}.ready"
        ups[host] = subprocess.Popen(
            [*cli, "up", ref, "--static-membership", "--host-id", host, "--json", "--log-dir",
             str(tmp_path / host), "--ready-file", str(ready[host]), "--duration", "150"],
            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not all(r.exists() for r in ready.values()):
            assert all(up.poll() is None for up in ups.values()), "an up ended"
            assert time.monotonic() < deadline, "the two ups never said ready"
            time.sleep(0.2)
        time.sleep(10)  # twins took each other's place about once a second: 3 times is an exit
    finally:
        for up in ups.values():
            up.send_signal(signal.SIGTERM)
        outputs = {host: up.communicate(timeout=60) for host, up in ups.items()}
    for host, (out, err) in outputs.items():
        assert ups[host].returncode == 0, err
        events = json.loads(out)["events"]
        assert not [e for e in events if "exited" in e], events
