"""A failed query's final names the stage where it failed, not only the last one.

A marker flows on through every later stage, each writing it under its own name,
so `push --follow` showed ``final q=... shout ERROR ValueError: ...`` for a query
whose `words` split failed (a new user debugging an app found the stage named
wrong). Since 2026-12-03 the marker's reason starts with the stage it failed in.
"""

from __future__ import annotations

from typing import Any

import pytest

from alto_stream import App, Child
from alto_stream.runner import run_in_memory

pytestmark = pytest.mark.timeout(30)


def _app(name: str) -> App:
    app = App(name, input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    async def words(doc: dict[str, Any]) -> list[dict[str, Any]]:
        if "bad" in doc["text"]:
            raise ValueError("no bad words")
        return [{"text": w} for w in doc["text"].split()]

    @app.map(source=words, schema="alto.Text")
    async def upper(word: dict[str, Any]) -> dict[str, Any]:
        if word["text"] == "boom":
            raise RuntimeError("boom went the word")
        return {"text": word["text"].upper()}

    @app.aggregate(source=upper, closes=words, schema="alto.Text")
    async def join(children: list[Child]) -> dict[str, Any]:
        return {"text": " ".join(c.value["text"] if c.ok else f"[{c.reason}]" for c in children)}

    @app.map(source=join, schema="alto.Text")
    async def shout(doc: dict[str, Any]) -> dict[str, Any]:
        return {"text": doc["text"] + "!"}

    return app


async def test_the_final_of_a_failed_query_names_the_stage_it_failed_in() -> None:
    results = await run_in_memory(_app("reason_stage"), [{"text": "a bad doc"}])
    (result,) = results
    assert not result.ok and result.stage == "shout"
    assert result.reason == "stage words: ValueError: no bad words"


async def test_a_failed_child_names_its_stage_to_the_aggregate() -> None:
    (result,) = await run_in_memory(_app("reason_child"), [{"text": "x boom y"}])
    assert result.value == {"text": "X [stage upper: RuntimeError: boom went the word] Y!"}
