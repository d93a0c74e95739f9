"""Options of the wrong type or out of range are a ConfigError where they are given.

A new user's Python API round: ``retries=1.5`` and ``@app.batch(size=2.5)`` were
taken, then every record was dead-lettered ("'float' object cannot be
interpreted as an integer") or the batch stage hung without a word; a string
gave a bare ``TypeError`` naming no option; ``run_in_memory`` read a dict's keys
or a string's letters as queries, divided by ``partitions=0`` and waited on
``replicas=0``; ``App(schemas="folder")`` read the folder's name letter by letter.
"""

from __future__ import annotations

from typing import Any, TypedDict

import pytest

from alto_stream import AltoError, App
from alto_stream.errors import ConfigError
from alto_stream.runner import LocalRun, run_in_memory
from alto_stream.runtime.memory import MemoryTransport

pytestmark = pytest.mark.timeout(30)


def _upper(app: App, **options: Any) -> None:
    @app.map(source=app.input, schema="alto.Text", **options)
    async def up(doc: dict[str, Any]) -> dict[str, Any]:
        return {"text": doc["text"].upper()}


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"retries": 1.5}, "map: retries must be a whole number >= 0, got 1.5"),
        ({"retries": True}, "map: retries must be a whole number >= 0, got True"),
        ({"max_in_flight": "3"}, "map: max_in_flight must be a whole number >= 1, got '3'"),
        ({"max_in_flight": 0}, "map: max_in_flight must be a whole number >= 1, got 0"),
        ({"retry_backoff": "x"}, "map: retry_backoff must be a number of seconds >= 0"),
        ({"retry_backoff": float("nan")}, "map: retry_backoff must be a number of seconds"),
        ({"timeout": "5"}, "timeout must be a number of seconds > 0, got '5'"),
        ({"timeout": 0}, "timeout must be a number of seconds > 0, got 0"),
        ({"priority": "yes"}, "map: priority must be True, False or None, got 'yes'"),
    ],
)
def test_a_stages_options_are_checked_as_it_registers(options: dict[str, Any], said: str) -> None:
    with pytest.raises(ConfigError, match="^" + said.replace("(", r"\(")):
        _upper(App("opts"), **options)


@pytest.mark.parametrize(
    ("size", "wait", "said"),
    [
        (2.5, 0.02, "batch: size must be a whole number >= 1, got 2.5"),
        (True, 0.02, "batch: size must be a whole number >= 1, got True"),
        (0, 0.02, "batch: size must be a whole number >= 1, got 0"),
        (4, "0.1", "batch: wait must be a number of seconds >= 0, got '0.1'"),
        (4, -1, "batch: wait must be a number of seconds >= 0, got -1"),
    ],
)
def test_a_batch_stages_size_and_wait_are_checked(size: Any, wait: Any, said: str) -> None:
    app = App("batchopts", input_schema="alto.Text")
    with pytest.raises(ConfigError, match="^" + said):

        @app.batch(source=app.input, schema="alto.Text", size=size, wait=wait)
        async def both(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return docs


def test_an_aggregates_timeout_and_an_apps_limits_are_checked() -> None:
    app = App("aggopts", input_schema="alto.Text")
    with pytest.raises(ConfigError, match="aggregate: timeout must be a number of seconds > 0"):

        @app.aggregate(source=app.input, closes=app.input, schema="alto.Text", timeout="9")
        async def joined(children: list[Any]) -> dict[str, Any]:
            return {}

    with pytest.raises(ConfigError, match=r"admission .* must be a whole number >= 1, got 2.5"):
        App("x", admission=2.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="admission_target must be a number of seconds > 0"):
        App("x", admission=2, admission_target=float("inf"))


def test_one_schema_source_is_taken_as_one(tmp_path: Any) -> None:
    folder = tmp_path / "schemas"
    folder.mkdir()
    (folder / "mine.Doc.avsc").write_text(
        '{"type": "record", "name": "Doc", "namespace": "mine", '
        '"fields": [{"name": "text", "type": "string"}]}'
    )
    app = App("oneschema", input_schema="mine.Doc", schemas=str(folder))
    _upper(app)
    assert app.schemas == (str(folder),)
    assert "mine.Doc" in app.registry.names()  # before: the folder's name letter by letter


class Doc(TypedDict):
    text: str


async def test_run_in_memory_refuses_one_query_alone_and_bad_settings() -> None:
    app = App("runargs", input_schema="alto.Text")
    _upper(app)
    for one in ({"text": "x"}, "hello", b"hello"):
        with pytest.raises(ConfigError, match="run_in_memory takes a list of queries, got a "):
            await run_in_memory(app, one)  # type: ignore[arg-type]
    for bad, said in [
        ({"timeout": 0}, "run_in_memory: timeout must be a number of seconds > 0, got 0"),
        ({"timeout": "5"}, "run_in_memory: timeout must be a number of seconds > 0"),
        ({"partitions": 0}, "run_in_memory: partitions must be a whole number >= 1, got 0"),
        ({"replicas": 0}, "replicas must be a whole number >= 1, got 0"),
        ({"replicas": {"nope": 2}}, "replicas names 'nope', not a stage of the app"),
        ({"replicas": {"up": 1.5}}, r"replicas\['up'\] must be a whole number >= 0, got 1.5"),
    ]:
        with pytest.raises(AltoError, match=said):
            await run_in_memory(app, [{"text": "x"}], **bad)
    # 0 workers for one stage is allowed: its workers run elsewhere (an e2e test's processes)
    run = LocalRun(app, MemoryTransport(1), replicas={"up": 0})
    assert run.workers == []
    # a TypedDict value, a tuple of queries: what the types now say they take
    queries: tuple[Doc, ...] = (Doc(text="a b"),)
    (result,) = await run_in_memory(app, queries)
    assert result.value == {"text": "A B"}


async def test_the_client_refuses_one_query_given_to_push_many_or_run() -> None:
    app = App("clientargs", input_schema="alto.Text")
    _upper(app)
    transport = MemoryTransport(2)
    async with LocalRun(app, transport):
        from alto_stream.client import Client

        async with Client(app, transport) as client:
            with pytest.raises(ConfigError, match="push_many takes a list of queries, got a dict"):
                await client.push_many({"text": "a"})  # type: ignore[arg-type]
            with pytest.raises(ConfigError, match="run takes a list of queries, got a str"):
                await client.run("abc", timeout=5)  # type: ignore[arg-type]
