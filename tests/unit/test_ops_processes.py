"""Supervisor (restarts with backoff, clean stop) and worker metrics (series, stats files)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from alto_stream.errors import ConfigError
from alto_stream.ops import supervisor as supervisor_module
from alto_stream.ops.metrics import WorkerMetrics, read_stats, report_loop, serve, snapshot
from alto_stream.ops.supervisor import ProcessSpec, Supervisor, supervise
from alto_stream.runtime.worker import WorkerStats
from alto_stream.testing import free_ports

pytestmark = pytest.mark.timeout(30)

CRASH = [sys.executable, "-c", "import sys; sys.exit(3)"]
SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


def _wait(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_a_crashing_process_is_restarted_with_growing_backoff() -> None:
    supervisor = Supervisor([ProcessSpec("crash", CRASH)], backoff=0.05, max_backoff=0.2)
    supervisor.start()
    try:
        child = supervisor.children[0]
        _wait(lambda: supervisor.poll() is not None and child.restarts >= 3)
        assert child.last_exit == 3
        assert child.backoff == 0.2  # 0.05, 0.1, 0.2 (capped)
    finally:
        supervisor.stop(timeout=5)
    exits = [e for e in supervisor.events if "exited with status 3" in e]
    assert len(exits) >= 3


def test_an_exit_event_names_the_error_the_worker_printed(tmp_path: Path) -> None:
    # A worker that cannot start (no index, a bad setting) prints one `error:` line
    # and exits 2; `up` shows events, not logs, so the event carries that line.
    failing = [
        sys.executable,
        "-c",
        "import sys; print('INFO starting'); "
        "print('error: /x is not an index (no manifest.json); fix: alto-stream index build', "
        "file=sys.stderr); print('a traceback line'); sys.exit(2)",
    ]
    log = tmp_path / "retrieve-0.log"
    supervisor = Supervisor([ProcessSpec("retrieve-0", failing, log_file=log)], backoff=5)
    supervisor.start()
    try:
        _wait(lambda: supervisor.poll() is not None and supervisor.children[0].last_exit == 2)
    finally:
        supervisor.stop(timeout=5)
    [event] = [e for e in supervisor.events if "exited" in e]
    assert event == (
        "retrieve-0 exited with status 2 (error: /x is not an index (no manifest.json); "
        "fix: alto-stream index build): not restarted (refused: the same command would be "
        "refused again)"
    )


def test_an_exit_without_an_error_line_says_only_its_status(tmp_path: Path) -> None:
    supervisor = Supervisor(
        [ProcessSpec("crash", CRASH, log_file=tmp_path / "crash.log")], backoff=5
    )
    supervisor.start()
    try:
        _wait(lambda: supervisor.poll() is not None and supervisor.children[0].last_exit == 3)
    finally:
        supervisor.stop(timeout=5)
    assert [e for e in supervisor.events if "exited" in e] == [
        "crash exited with status 3: restarting in 5s"
    ]


def test_a_killed_run_is_not_blamed_on_an_earlier_runs_error_line(tmp_path: Path) -> None:
    # Found by a new user: `up` said "generate-1 exited with status -9 (error: Kafka
    # does not answer ...)" for a worker killed by SIGKILL, quoting a line that an
    # earlier run had printed into the same log while the broker was down.
    first = tmp_path / "first-ran"
    flaky = [
        sys.executable,
        "-c",
        "import pathlib, sys, time\n"
        f"first = pathlib.Path(r'{first}')\n"
        "if not first.exists():\n"
        "    first.touch()\n"
        "    print('error: Kafka does not answer at 127.0.0.1:1', file=sys.stderr)\n"
        "    sys.exit(1)\n"
        "print('INFO started', flush=True)\n"
        "time.sleep(60)\n",
    ]
    log = tmp_path / "generate-1.log"
    supervisor = Supervisor([ProcessSpec("generate-1", flaky, log_file=log)], backoff=0.05)
    supervisor.start()
    child = supervisor.children[0]
    try:
        _wait(lambda: supervisor.poll() is not None and child.restarts == 1 and child.running)
        _wait(lambda: "INFO started" in log.read_text())
        assert child.process is not None
        child.process.kill()
        _wait(lambda: supervisor.poll() is not None and child.last_exit == -9)
    finally:
        supervisor.stop(timeout=5)
    assert [e for e in supervisor.events if "exited" in e] == [
        "generate-1 exited with status 1 (error: Kafka does not answer at 127.0.0.1:1): "
        "restarting in 0.05s",
        "generate-1 exited with status -9 (killed by SIGKILL): restarting in 0.1s",
    ]


def test_an_error_line_long_before_the_exit_is_shown_with_its_age(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A line printed well before the exit may not explain it: say how old it is.
    monkeypatch.setattr(supervisor_module, "_RECENT", 0.5)
    late = [
        sys.executable,
        "-c",
        "import sys, time; print('error: the broker went away', file=sys.stderr); "
        "time.sleep(1.6); sys.exit(1)",
    ]
    log = tmp_path / "late.log"
    supervisor = Supervisor([ProcessSpec("late", late, log_file=log)], backoff=5)
    supervisor.start()
    try:
        _wait(lambda: supervisor.poll() is not None and supervisor.children[0].last_exit == 1)
    finally:
        supervisor.stop(timeout=5)
    [event] = [e for e in supervisor.events if "exited" in e]
    assert event.startswith("late exited with status 1 (its last error line, ")
    assert event.endswith(" s before: error: the broker went away): restarting in 5s")


def test_stop_terminates_and_kills_what_does_not_stop(tmp_path: Path) -> None:
    stubborn = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "open(r'%s', 'w').close(); time.sleep(60)" % (tmp_path / "ready"),
    ]
    log = tmp_path / "logs" / "sleeper.log"
    supervisor = Supervisor(
        [ProcessSpec("sleeper", SLEEP, log_file=log), ProcessSpec("stubborn", stubborn)]
    )
    supervisor.start()
    _wait(lambda: (tmp_path / "ready").exists())
    assert supervisor.alive() == 2
    began = time.monotonic()
    killed = supervisor.stop(timeout=1.0)
    assert killed == ["stubborn"]
    assert time.monotonic() - began < 5
    assert supervisor.alive() == 0
    assert log.exists()
    assert supervisor.poll() == []  # stopped: nothing is restarted


async def test_supervise_runs_for_a_duration_then_stops() -> None:
    supervisor = Supervisor([ProcessSpec("sleeper", SLEEP)])
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        ticks += 1

    signalled = await asyncio.wait_for(
        supervise(supervisor, duration=0.5, interval=0.1, tick=tick), 10
    )
    assert signalled is False
    assert ticks >= 3
    assert supervisor.alive() == 0


def test_metrics_follow_the_stats_and_are_served() -> None:
    stats = WorkerStats()
    metrics = WorkerMetrics("app", "stage", "0")
    stats.consumed, stats.produced, stats.errors, stats.in_flight = 5, 7, 1, 2
    stats.handler_seconds.extend([0.002, 0.3])
    metrics.update(stats, {("t", 0): 4})
    stats.consumed = 8
    stats.handler_seconds.append(0.004)
    metrics.update(stats)
    port = free_ports()
    serve(port, metrics.registry, addr="127.0.0.1")
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    labels = 'app="app",replica="0",stage="stage"'
    assert f"alto_records_in_total{{{labels}}} 8.0" in body
    assert f"alto_records_out_total{{{labels}}} 7.0" in body
    assert f"alto_errors_total{{{labels}}} 1.0" in body
    assert f"alto_in_flight{{{labels}}} 2.0" in body
    assert f"alto_handler_seconds_count{{{labels}}} 3.0" in body
    bucket = metrics.registry.get_sample_value(
        "alto_handler_seconds_bucket",
        {"app": "app", "stage": "stage", "replica": "0", "le": "0.005"},
    )
    assert bucket == 2.0
    assert 'alto_consumer_lag{app="app",partition="0",replica="0",stage="stage",topic="t"} 4.0' in (
        body
    )
    with pytest.raises(ConfigError, match=f"cannot serve metrics on port {port}"):
        serve(port, metrics.registry, addr="127.0.0.1")


def test_trimmed_handler_samples_are_not_counted_twice() -> None:
    stats = WorkerStats()
    metrics = WorkerMetrics("app", "stage", "0")
    stats.handler_seconds.extend([0.001] * 10_001)
    metrics.update(stats)
    del stats.handler_seconds[:5_000]  # what the worker does past 10,000 samples
    stats.handler_seconds.extend([0.001] * 10)
    metrics.update(stats)
    count = metrics.registry.get_sample_value(
        "alto_handler_seconds_count", {"app": "app", "stage": "stage", "replica": "0"}
    )
    assert count == 10_011


async def test_report_loop_writes_stats_files(tmp_path: Path) -> None:
    stats = WorkerStats(consumed=2)
    path = tmp_path / "w.json"

    async def lag() -> dict[tuple[str, int], int]:
        return {("t", 0): 3, ("t", 1): 1}

    task = asyncio.create_task(
        report_loop(stats, stage="s", replica="1", stats_file=path, lag=lag, interval=0.02)
    )
    await asyncio.sleep(0.1)
    stats.consumed = 9
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    data = read_stats(path)
    assert data is not None
    assert (data["consumed"], data["stage"], data["replica"], data["lag"]) == (9, "s", "1", 4)
    assert read_stats(tmp_path / "missing.json") is None
    assert snapshot(WorkerStats(), stage="s", replica="0")["handler_p50"] is None


async def test_supervise_passes_a_second_signal_on_and_kills_at_a_third(tmp_path: Path) -> None:
    # A child that counts the SIGTERMs it gets and keeps running (a worker whose calls
    # outlast the grace): `up`'s second Ctrl-C reached nobody, its third neither.
    counting = [
        sys.executable,
        "-c",
        "import os, signal, time\n"
        f"folder = {str(tmp_path)!r}\n"
        "def note(n, f):\n"
        "    note.n = getattr(note, 'n', 0) + 1\n"
        "    open(os.path.join(folder, f'term{note.n}'), 'w').close()\n"
        "signal.signal(signal.SIGTERM, note)\n"
        "open(os.path.join(folder, 'ready'), 'w').close()\n"
        "time.sleep(60)\n",
    ]
    supervisor = Supervisor([ProcessSpec("calls", counting)])
    running = asyncio.create_task(supervise(supervisor, interval=0.05, stop_timeout=20))
    for _ in range(200):
        if (tmp_path / "ready").exists():
            break
        await asyncio.sleep(0.05)
    child = supervisor.children[0].process
    assert child is not None
    assert os.getpgid(child.pid) != os.getpgid(0)  # a terminal's Ctrl-C reaches `up` only
    for expected in ("term1", "term2"):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(200):
            if (tmp_path / expected).exists():
                break
            await asyncio.sleep(0.05)
        assert (tmp_path / expected).exists()
    began = time.monotonic()
    os.kill(os.getpid(), signal.SIGINT)  # the third: killed, not waited for
    assert await asyncio.wait_for(running, 10) is True
    assert time.monotonic() - began < 5
    assert child.returncode == -signal.SIGKILL
