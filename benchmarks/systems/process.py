"""The server processes the bench starts (the engine, a gate): up until answering, then stopped."""

from __future__ import annotations

import asyncio
import subprocess
import time
import urllib.request
from pathlib import Path

from alto_stream.errors import AltoError

__all__ = ["start", "stop"]


async def start(
    command: list[str], *, probe: str, what: str, log: Path | None, within: float
) -> subprocess.Popen[bytes]:
    """Run ``command`` (output to ``log``) and return once GET ``probe`` answers 200.

    :class:`AltoError` naming ``what`` and the log if it exits or is not up ``within`` s.
    """
    if log is None:
        process = subprocess.Popen(  # noqa: ASYNC220 (starts at once)
            command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
    else:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(  # noqa: ASYNC220 (starts at once)
                command, stdout=out, stderr=subprocess.STDOUT
            )
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
    """SIGTERM ``process`` if it still runs; SIGKILL it after ``grace`` seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        await asyncio.to_thread(process.wait, grace)
    except subprocess.TimeoutExpired:
        process.kill()
