"""A replay into a stage that still fails says so when it times out.

Found by a new user: a dead letter replayed into its stage before the bug was
fixed timed out with "nothing of it reached ...", hiding that it had failed
again at once (a new dead letter, which only ``trace`` showed).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from alto_stream import App, Client
from alto_stream.ops.topics import app_topic_specs, apply_topics
from alto_stream.runner import LocalRun
from alto_stream.runtime.kafka import KafkaOps, KafkaTransport

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

ROOT = str(Path(__file__).resolve().parents[2])

MODULE = """
from alto_stream import App

app = App({name!r}, input_schema="alto.Text")


@app.split(source=app.input, schema="alto.Text")
def words(q):
    return [{{"text": w}} for w in q["text"].split()]


@app.map(source=words, schema="alto.Text")
def shout(w):
    if w["text"] == "bad":
        raise ValueError("still broken on 'bad'")
    return {{"text": w["text"].upper()}}


@app.aggregate(source=shout, closes=words, schema="alto.Text")
def join(children):
    return {{"text": " ".join(c.value["text"] for c in children if c.ok)}}
"""


async def test_a_replay_that_fails_again_says_so(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    name = unique_name("again")
    (tmp_path / "again_app.py").write_text(MODULE.format(name=name))
    sys.path.insert(0, str(tmp_path))
    try:
        from again_app import app  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
    assert isinstance(app, App)
    transport = KafkaTransport(kafka_bootstrap)
    topology = app.topology()
    await apply_topics(KafkaOps(transport), app_topic_specs(topology))
    async with LocalRun(app, transport), Client(app, transport) as client:
        (query,) = await client.push_many([{"text": "good bad words"}])
        finals = [r async for r in client.follow([query], timeout=60, partials=False)]
        assert finals[0].value == {"text": "GOOD WORDS"}  # (the app drops the failed word)
        env = {
            **os.environ,
            "ALTO_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", ".")]),
        }
        replay = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "alto_stream.cli", "replay", f"{name}.shout.dlq",
            "--from-beginning", "--to-stage", "shout", "--app", "again_app:app",
            "--timeout", "8",
            env=env, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, said = await asyncio.wait_for(replay.communicate(), 90)
    text = " ".join(said.decode().split())
    assert replay.returncode == 1, text
    assert "the replay failed again at stage shout: ValueError: still broken on 'bad'" in text
    assert f"(dead letter {name}.shout.dlq[" in text
    assert b" -> " in out and b"final" not in out  # the replayed word alone cannot finish
