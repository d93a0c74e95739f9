"""The apps the benchmarks measure, built by factories so each run gets its own topics.

Worker processes load them by reference, for example
``alto-stream worker "benchmarks.apps:build_map('bench-x')" echo``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from alto_stream import App, Child

__all__ = ["build_fanout", "build_map"]


def build_map(name: str, handler: str = "async") -> App:
    """``input -> echo``: one map stage returning its record unchanged.

    ``handler`` is ``"async"`` (an ``async def``, a task per record) or ``"plain"``
    (a ``def``, run in the worker's loop).
    """
    app = App(name, input_schema="alto.Text")
    if handler == "plain":

        @app.map(source=app.input, schema="alto.Text")
        def echo(value: dict[str, Any]) -> dict[str, Any]:
            return value

    else:

        @app.map(source=app.input, schema="alto.Text")
        async def echo(value: dict[str, Any]) -> dict[str, Any]:
            return value

    return app


def build_fanout(name: str, children: int = 100) -> App:
    """``input -> parts (split into children) -> echo (map) -> join (aggregate)``."""
    app = App(name, input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    async def parts(value: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        for i in range(children):
            yield {"text": str(i)}

    @app.map(source=parts, schema="alto.Text")
    async def echo(value: dict[str, Any]) -> dict[str, Any]:
        return value

    @app.aggregate(source=echo, closes=parts, schema="alto.Text")
    async def join(found: list[Child]) -> dict[str, Any]:
        return {"text": str(sum(1 for c in found if c.ok))}

    return app
