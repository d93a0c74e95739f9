"""The processes the bench starts (the engine, a gate, ``up``): started, then always stopped.

Each child runs in a process group of its own (a Ctrl-C at the terminal reaches
the bench alone, which then stops them in order) and is remembered until it is
stopped: :func:`stop_all` (at exit, and on SIGTERM through :func:`stop_on_sigterm`)
ends every one still running, with its group, however the bench ends.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import IO

from alto_stream.errors import AltoError

__all__ = ["spawn", "start", "stop", "stop_all", "stop_group", "stop_on_sigterm"]

_children: set[subprocess.Popen[bytes]] = set()
"""The children :func:`spawn` started that were not stopped yet."""


def spawn(
    command: list[str], *, log: Path | None, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``command`` (output to ``log``) in its own process group; remembered till stopped."""
    with contextlib.ExitStack() as stack:
        out: IO[bytes] | int = subprocess.DEVNULL
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            out = stack.enter_context(log.open("wb"))  # the child keeps its own copy
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    _children.add(process)
    return process


def stop_group(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM ``process`` and its group; SIGKILL the group after ``grace`` s (blocking)."""
    _children.discard(process)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)  # its own group: the group's id is its pid
        try:
            process.wait(grace)
            if sig == signal.SIGTERM:
                # The leader is gone; what it left in its group goes too.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
            return
        except subprocess.TimeoutExpired:
            continue


def stop_all(grace: float = 10.0) -> None:
    """Stop every child still remembered (with its group): the bench's last word."""
    for process in list(_children):
        stop_group(process, grace)


atexit.register(stop_all)


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Within: SIGTERM is a KeyboardInterrupt, so the same clean-up runs as for Ctrl-C."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave SIGTERM as it is
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


async def start(
    command: list[str], *, probe: str, what: str, log: Path | None, within: float
) -> subprocess.Popen[bytes]:
    """Run ``command`` (output to ``log``) and return once GET ``probe`` answers 200.

    :class:`AltoError` naming ``what`` and the log if it exits or is not up ``within`` s.
    """
    process = spawn(command, log=log)
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(_answers, probe):
        if process.poll() is not None or time.monotonic() > deadline:
            await stop(process)
            raise AltoError(f"{what} did not start (log: {log})")
        await asyncio.sleep(0.2)
    return process


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except OSError:
        return False


async def stop(process: subprocess.Popen[bytes] | None, grace: float = 10.0) -> None:
    """SIGTERM ``process`` and its group; SIGKILL them after ``grace`` seconds."""
    if process is not None:
        await asyncio.to_thread(stop_group, process, grace)
