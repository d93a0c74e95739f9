"""Which event loop a worker process runs on: uvloop when installed, else asyncio's.

uvloop (libuv, in C) schedules callbacks and moves socket bytes faster than
asyncio's pure-Python loop; a worker spends much of its time in exactly that.
``ALTO_EVENT_LOOP=asyncio`` chooses asyncio's loop anyway (to compare, or to debug).

Over TLS (``SSL``, ``SASL_SSL``) the default is asyncio's loop: uvloop waits up to
its 30 s SSL shutdown time-out for the broker's close_notify when a connection
closes, and aiokafka waits for the close, so every consumer stop (a changelog
restore, a lag probe) could take 30 s (measured here on a local SASL_SSL broker:
8 of 14 one-partition reads took 30.1 s on uvloop, 0 of 10 on asyncio).
``ALTO_EVENT_LOOP=uvloop`` still chooses uvloop.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

from alto_stream.errors import AltoError, ConfigError
from alto_stream.security import Security

__all__ = ["EventLoop", "chosen_loop", "run"]

T = TypeVar("T")

EventLoop = Literal["uvloop", "asyncio"]


def chosen_loop() -> EventLoop:
    """The loop ``run`` uses: ``ALTO_EVENT_LOOP`` if set, else uvloop when it is installed
    and the Kafka connections do not use TLS (see the module's docstring)."""
    wanted = os.environ.get("ALTO_EVENT_LOOP", "").strip().lower()
    if wanted == "asyncio":
        return "asyncio"
    available = importlib.util.find_spec("uvloop") is not None
    if wanted == "uvloop":
        if not available:
            raise ConfigError(
                "ALTO_EVENT_LOOP=uvloop but uvloop is not installed; fix: pip install uvloop, "
                "or set ALTO_EVENT_LOOP=asyncio"
            )
        return "uvloop"
    if wanted:
        raise ConfigError(f"ALTO_EVENT_LOOP must be 'uvloop' or 'asyncio', got {wanted!r}")
    return "uvloop" if available and not _tls() else "asyncio"


def _tls() -> bool:
    """Whether this process's Kafka settings (``ALTO_SECURITY_PROTOCOL``...) ask for TLS."""
    try:
        return Security.from_env().tls
    except AltoError:  # bad settings: the connection that uses them says why
        return False


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on the chosen loop (see :func:`chosen_loop`)."""
    try:
        loop = chosen_loop()
    except ConfigError:
        main.close()  # never started: no "coroutine was never awaited" warning
        raise
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
