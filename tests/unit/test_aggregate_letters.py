"""An aggregate's dead letter as tail shows it and replay refuses it, and a replay's time-out.

Found by a new user: a failed aggregate's letter read ``dead letter of
tree1.group_sum[1]@-1`` (offset -1: no one input record failed, which the line
did not say); replaying it named ``--to-stage FIRST_STAGE --app APP_REF`` as
placeholders although both were known; and a replay that timed out said that "a
query that finished before then is followed with an earlier since=", which
cannot be so of a query the replay itself had just written.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import typer
from rich.console import Console

from alto_stream import App
from alto_stream.cli import _opsview
from alto_stream.cli.replay_cmd import _refeed
from alto_stream.client import Client
from alto_stream.errors import ConfigError
from alto_stream.ops.records import DecodedRecord, ReadWindow, read_records
from alto_stream.ops.replay import Rerooter, replay_target
from alto_stream.runner import LocalRun
from alto_stream.runtime.failures import letter_source
from alto_stream.runtime.memory import MemoryOps, MemoryTransport
from alto_stream.runtime.options import WorkerOptions

pytestmark = pytest.mark.timeout(30)

REF = "letters_app:app"


def _app(name: str) -> App:
    app = App(name, input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    async def words(doc: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in doc["text"].split()]

    @app.aggregate(source=words, closes=words, schema="alto.Text")
    async def joined(children: list[Any]) -> dict[str, Any]:
        if len(children) == 2:
            raise ValueError("two words are refused")
        return {"text": str(len(children))}

    return app


async def _letter(name: str) -> tuple[App, MemoryTransport, str, DecodedRecord]:
    """Run a query whose aggregate fails; its dead letter."""
    app = _app(name)
    transport = MemoryTransport(2)
    async with LocalRun(app, transport), Client(app, transport) as client:
        finals = await client.run([{"text": "a b"}], timeout=10)
    (query_id,) = finals
    topic = app.topology().plan("joined").dead_letter_topic
    (letter,) = [i async for i in read_records(MemoryOps(transport), [topic], ReadWindow())]
    return app, transport, query_id, letter


async def test_an_aggregates_dead_letter_names_its_ancestor_not_offset_minus_one() -> None:
    _, _, query_id, letter = await _letter("letters-tail")
    assert letter.envelope is not None
    console = Console(record=True, width=400)
    console.print(_opsview.record_text(letter), soft_wrap=True)
    line = console.export_text()
    assert "@-1" not in line
    assert (
        f"dead letter of ancestor {query_id} as a whole (an aggregate's failure, no one input "
        "record of letters-tail.words["
    ) in line
    assert "at stage joined: ValueError: two words are refused" in line
    one = {"topic": "a.words", "partition": 1, "offset": 7, "key": b"k", "headers": []}
    assert letter_source(one) == "a.words[1]@7"


async def test_replaying_an_aggregates_dead_letter_names_the_real_command() -> None:
    app, _, query_id, letter = await _letter("letters-replay")
    target = replay_target(app.topology(), "joined")
    with pytest.raises(ConfigError) as raised:
        Rerooter(target, app_ref=REF).reroot(letter)
    message = str(raised.value)
    assert "FIRST_STAGE" not in message and "APP_REF" not in message
    assert message.endswith(
        f"fix: replay its query from the input: alto-stream replay letters-replay.input "
        f"--from-beginning --query {query_id} --to-stage words --app {REF}"
    )
    with pytest.raises(ConfigError, match=r"--to-stage words --app APP$"):
        Rerooter(target).reroot(letter)  # the web view: no command-line name for the app


async def test_a_replay_that_times_out_says_so_and_how_to_look_at_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    app = _app("letters-late")
    transport = MemoryTransport(2)
    async with LocalRun(app, transport), Client(app, transport) as client:
        await client.run([{"text": "a b c"}], timeout=10)
    topology = app.topology()
    target = replay_target(topology, "words")
    window = ReadWindow()
    items = [i async for i in read_records(MemoryOps(transport), [target.topic], window)]
    monkeypatch.setattr("alto_stream.ops.loading.load_topology", lambda ref: (app, topology))
    with pytest.raises(typer.Exit):  # no worker runs now: the replay cannot finish
        await _refeed(transport, REF, target, items, True, 0.5, False)  # type: ignore[arg-type]
    err = " ".join(capsys.readouterr().err.split())
    assert "1 queries did not finish within 0.5s" in err
    assert "earlier since=" not in err
    assert "reached letters-late.joined since it was pushed at" in err
    assert "see how far the replay got: alto-stream trace " in err
    assert f"--app {REF}" in err


async def test_following_queries_pushed_after_since_does_not_suggest_an_earlier_since() -> None:
    app = _app("letters-run")
    async with Client(app, MemoryTransport(1)) as client:  # no worker: nothing comes
        with pytest.raises(TimeoutError) as raised:
            await client.run([{"text": "x"}], timeout=0.3)
    message = str(raised.value)
    assert "earlier since=" not in message
    assert "nothing of it reached letters-run.joined since it was pushed at" in message
    async with Client(app, MemoryTransport(1)) as client:  # pushed before since: it may be
        follow = client.follow(["old"], timeout=0.3, pushed_at=time.time() - 120)
        with pytest.raises(TimeoutError, match="earlier since="):
            await anext(follow)


async def test_a_dead_letter_cut_to_fit_is_not_replayed() -> None:
    # A new user's round: a 999,860-character query's dead letter held a cut copy; replay
    # ran the cut bytes ("replayed 1 records", then a DecodeError final) and exited 0.
    app = App("letters-cut", input_schema="alto.Text")

    @app.map(source=app.input, schema="alto.Text")
    async def check(doc: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("refused")

    transport = MemoryTransport(1)
    options = WorkerOptions(max_record_bytes=20_000)
    async with LocalRun(app, transport, options=options), Client(app, transport) as client:
        finals = await client.run([{"text": "x" * 19_900}], timeout=10)
    (query_id,) = finals
    topic = app.topology().plan("check").dead_letter_topic
    (letter,) = [i async for i in read_records(MemoryOps(transport), [topic], ReadWindow())]
    assert letter.envelope is not None and letter.envelope.value is not None
    assert "dead letter truncated to fit 20000 bytes" in letter.envelope.value["error"]
    with pytest.raises(ConfigError) as raised:
        Rerooter(replay_target(app.topology(), "check"), app_ref=REF).reroot(letter)
    assert str(raised.value).startswith("this dead letter holds a cut copy of its record")
    assert str(raised.value).endswith(
        f"alto-stream replay letters-cut.input --from-beginning --query {query_id} "
        f"--to-stage check --app {REF}"
    )
