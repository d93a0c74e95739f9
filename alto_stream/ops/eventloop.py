"""Which event loop a worker process runs on: uvloop when installed, else asyncio's.

uvloop (libuv, in C) schedules callbacks and moves socket bytes faster than
asyncio's pure-Python loop; a worker spends much of its time in exactly that.
``ALTO_EVENT_LOOP=asyncio`` chooses asyncio's loop anyway (to compare, or to debug).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

from alto_stream.errors import ConfigError

__all__ = ["EventLoop", "chosen_loop", "run"]

T = TypeVar("T")

EventLoop = Literal["uvloop", "asyncio"]


def chosen_loop() -> EventLoop:
    """The loop ``run`` uses: ``ALTO_EVENT_LOOP`` if set, else uvloop when it is installed."""
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
    return "uvloop" if available else "asyncio"


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
