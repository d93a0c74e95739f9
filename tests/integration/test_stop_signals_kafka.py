"""Stop signals on real processes: a second Ctrl-C on `worker`, a terminal's Ctrl-C on `up`.

A terminal's Ctrl-C reaches every process of its foreground group: `up`'s workers got
it too, and then `up`'s SIGTERM, a second signal that cancelled each worker at once
(a traceback, exit 1, every call in flight thrown away) instead of letting the calls
finish. And a second signal to `worker` cancelled its task mid-stop the same way.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from alto_stream.cli import app as cli
from alto_stream.client import Client
from alto_stream.ops.loading import load_app
from alto_stream.runtime.kafka import KafkaTransport

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]

APP = """
import asyncio, os, pathlib
from alto_stream import App

app = App({name!r}, input_schema="alto.Text")
CALLS = pathlib.Path(os.environ["CALLS_DIR"])


@app.map(source=app.input, schema="alto.Text")
async def slow(query):
    (CALLS / ("start-" + query["text"])).touch()
    await asyncio.sleep(float(os.environ.get("CALL_SECONDS", "3")))
    (CALLS / ("end-" + query["text"])).touch()
    return {{"text": query["text"].upper()}}
"""


def _setup(
    bootstrap: str, folder: Path, unique_name: Callable[[str], str], seconds: float
) -> tuple[str, dict[str, str], Path]:
    name = unique_name("stopsig")
    module = "m_" + name.replace("-", "_")
    (folder / f"{module}.py").write_text(APP.format(name=name))
    calls = folder / "calls"
    calls.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)]),
        "ALTO_BOOTSTRAP_SERVERS": bootstrap,
        "CALLS_DIR": str(calls),
        "CALL_SECONDS": str(seconds),
    }
    ref = f"{module}:app"
    sys.path.insert(0, str(folder))
    try:
        result = CliRunner().invoke(cli, ["topics", "apply", ref], env=env)
        assert result.exit_code == 0, result.output
        app = load_app(ref)
    finally:
        sys.path.remove(str(folder))

    async def push() -> None:
        async with Client(app, KafkaTransport(bootstrap)) as client:
            await client.push_many([{"text": f"q{i}"} for i in range(3)])

    asyncio.run(push())
    return ref, env, calls


def _wait(condition: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _started(calls: Path) -> set[str]:
    return {p.name.removeprefix("start-") for p in calls.glob("start-*")}


def _ended(calls: Path) -> set[str]:
    return {p.name.removeprefix("end-") for p in calls.glob("end-*")}


def test_a_second_signal_to_worker_cuts_calls_short_and_stops_cleanly(
    kafka_bootstrap: str, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    ref, env, calls = _setup(kafka_bootstrap, tmp_path, unique_name, seconds=60)
    worker = subprocess.Popen(
        [sys.executable, "-m", "alto_stream.cli", "worker", ref, "slow"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait(lambda: len(_started(calls)) == 3, 60, "three calls in flight")
        worker.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert worker.poll() is None  # the first waits for the calls (10 s grace)
        began = time.monotonic()
        worker.send_signal(signal.SIGINT)
        _, err = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 0, err
    assert time.monotonic() - began < 8
    assert "Traceback" not in err, err
    assert "a second stop signal" in err
    assert (
        "3 records still running when told to stop at once (a second stop signal) are cut short"
        in err
    )
    assert not _ended(calls)


def test_a_terminal_ctrl_c_lets_ups_workers_finish_their_calls(
    kafka_bootstrap: str, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    ref, env, calls = _setup(kafka_bootstrap, tmp_path, unique_name, seconds=3)
    logs = tmp_path / "run"
    up = subprocess.Popen(
        [sys.executable, "-m", "alto_stream.cli", "up", ref, "--json", "--log-dir", str(logs)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as a terminal's job is
    )
    try:
        _wait(lambda: len(_started(calls)) == 3, 60, "three calls in flight")
        os.killpg(up.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _, err = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.communicate()
    log = (logs / "slow-0.log").read_text()
    assert up.returncode == 0, err
    assert _ended(calls) == {"q0", "q1", "q2"}, log  # the calls finished: none was cut
    assert "Traceback" not in log, log
    assert "cut short" not in log, log
