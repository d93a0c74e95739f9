"""Stopping a server process the bench started (the engine, a gate)."""

from __future__ import annotations

import asyncio
import subprocess

__all__ = ["stop"]


async def stop(process: subprocess.Popen[bytes] | None, grace: float = 10.0) -> None:
    """SIGTERM ``process`` if it still runs; SIGKILL it after ``grace`` seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        await asyncio.to_thread(process.wait, grace)
    except subprocess.TimeoutExpired:
        process.kill()
