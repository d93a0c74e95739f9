"""The worker process's asyncio exception handler and collector settings."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from typing import Any

import pytest
from aiokafka.errors import ProducerFenced

from alto_stream import settings
from alto_stream.errors import ConfigError
from alto_stream.ops import worker as worker_ops
from alto_stream.ops.worker import _quiet_fencing


class _Loop:
    def __init__(self) -> None:
        self.passed_on: list[dict[str, Any]] = []

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.passed_on.append(context)


def test_a_fenced_producers_leftover_future_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = _Loop()
    fenced = {"message": "Future exception was never retrieved", "exception": ProducerFenced()}
    with caplog.at_level(logging.INFO, logger="alto_stream.ops.worker"):
        _quiet_fencing(loop, fenced)  # type: ignore[arg-type]
    assert loop.passed_on == []
    assert "fenced producer" in caplog.text
    other = {"message": "Task exception was never retrieved", "exception": ValueError("x")}
    _quiet_fencing(loop, other)  # type: ignore[arg-type]
    assert loop.passed_on == [other]
    no_exception = {"message": "something else"}
    _quiet_fencing(loop, no_exception)  # type: ignore[arg-type]
    assert loop.passed_on == [other, no_exception]


def test_it_is_a_valid_asyncio_handler() -> None:
    async def check() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_quiet_fencing)
        loop.call_exception_handler({"message": "m", "exception": ProducerFenced()})
        loop.set_exception_handler(None)

    asyncio.run(check())


def test_a_worker_process_calms_the_collector() -> None:
    threshold = gc.get_threshold()
    try:
        worker_ops._calm_collector()
        assert gc.get_threshold()[0] == worker_ops._YOUNG_OBJECTS
        assert gc.get_freeze_count() > 0  # what exists at start-up is out of the collector's way
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_a_worker_process_takes_its_limits_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The errors that name a limit say to raise it; a CLI worker had no way to.
    for env in settings.LIMIT_ENVS.values():
        monkeypatch.delenv(env, raising=False)
    assert settings.env_limits() == {}
    monkeypatch.setenv("ALTO_MAX_RECORD_BYTES", "4000000")
    monkeypatch.setenv("ALTO_MAX_CHILDREN", "500000")
    assert settings.env_limits() == {"max_record_bytes": 4_000_000, "max_children": 500_000}
    monkeypatch.setenv("ALTO_MAX_CHILDREN", "lots")
    with pytest.raises(ConfigError, match="ALTO_MAX_CHILDREN must be a whole number > 0"):
        settings.env_limits()


async def test_a_held_event_loop_is_named_in_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    # Found by a new user: an async handler calling time.sleep(60) ran its record 2-4
    # times (its heartbeats stopped too) and nothing said why.
    import time

    watch = asyncio.create_task(worker_ops._watch_loop("slow", 6.0, tick=0.05))
    await asyncio.sleep(0.1)
    with caplog.at_level(logging.WARNING):
        time.sleep(2.2)  # noqa: ASYNC251 (what the handler did)
        await asyncio.sleep(0.2)
    watch.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watch
    (line,) = [r.getMessage() for r in caplog.records if "event loop was held" in r.getMessage()]
    assert line.startswith("stage slow: the event loop was held for 2.")
    assert "await asyncio.to_thread(...)" in line and "--session-timeout (6 s)" in line
    assert "and so does a process frozen from outside" in line


def test_a_stopped_process_is_not_blamed_on_a_handler() -> None:
    # Found by a new user: after SIGSTOP/SIGCONT of a worker the line said "a handler that
    # does not await (time.sleep, CPU work) stops heartbeats too", blaming the app's code.
    import signal
    import subprocess
    import sys
    import time

    code = (
        "import asyncio, logging, sys\n"
        "from alto_stream.ops import worker\n"
        "logging.basicConfig(stream=sys.stdout, format='%(message)s')\n"
        "async def main():\n"
        "    watch = asyncio.create_task(worker._watch_loop('slow', 6.0, tick=0.05))\n"
        "    print('watching', flush=True)\n"
        "    await asyncio.sleep(3.5)\n"
        "    watch.cancel()\n"
        "asyncio.run(main())\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline() == "watching\n"
    time.sleep(0.3)
    child.send_signal(signal.SIGSTOP)
    time.sleep(2.3)
    child.send_signal(signal.SIGCONT)
    out, _ = child.communicate(timeout=20)
    assert child.returncode == 0
    (line,) = [ln for ln in out.splitlines() if "stage slow" in ln]
    assert line.startswith("stage slow: the process was stopped for 2."), line
    assert "SIGCONT" in line and "handler that does not await" not in line
