"""Workers SIGKILLed and restarted mid-run lose nothing and duplicate nothing.

Every stage runs as two worker processes (``python -m alto_stream.cli worker``)
against the real broker. While queries flow, random workers are killed with
SIGKILL and restarted, and a third replica joins one stage (a rebalance). The
final results must equal the sequential reference, each query must have one
final result after deduplication by id (and exactly one record on the output
topic in the transactional mode), and a split that draws a random number of
children on every run must never mix two attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from alto_stream.ancestry import Kind
from alto_stream.client import Client, Result
from alto_stream.message import Envelope
from alto_stream.ops.loading import load_app
from alto_stream.runtime.kafka import KafkaTransport
from alto_stream.testing import read_topic
from alto_stream.topology import Topology
from workers import textflow

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(400)]

ROOT = Path(__file__).resolve().parents[2]

APP_MODULE = """
import asyncio
import random
from alto_stream import App
from workers.textflow import build

app = build({name!r}, word_delay=0.03, word_in_flight=4)

chaos = App({chaos!r}, input_schema="alto.Text")

@chaos.split(source=chaos.input, schema="alto.Text")
async def draw(query):
    # A non-deterministic split: a new number of children on every run.
    for i in range(random.randint(0, 6)):
        await asyncio.sleep(0.01)
        yield {{"text": f"{{query['text']}}-{{i}}"}}

@chaos.map(source=draw, schema="alto.Text", max_in_flight=2)
async def work(value):
    await asyncio.sleep(0.05)
    return value

@chaos.aggregate(source=work, closes=draw, schema="alto.Json")
async def collect(children):
    import json
    return {{"json": json.dumps({{
        "attempts": sorted({{c.ancestry.path[-1].attempt for c in children}}),
        "indices": [c.index[0] for c in children],
        "ok": all(c.ok for c in children),
    }})}}
"""


@contextlib.contextmanager
def _app_module(tmp_path: Path, unique_name: Callable[[str], str]) -> Iterator[str]:
    """Write APP_MODULE under unique app names into ``tmp_path``; yield its module name.

    Worker processes import it through PYTHONPATH, this process through sys.path.
    """
    module = unique_name("killapp").replace("-", "_")
    source = APP_MODULE.format(name=unique_name("kt"), chaos=unique_name("kc"))
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    sys.path.insert(0, str(tmp_path))
    try:
        yield module
    finally:
        sys.path.remove(str(tmp_path))


class Fleet:
    """Worker processes of one app, started, killed and restarted by the test."""

    def __init__(self, module: str, attr: str, bootstrap: str, delivery: str, path: Path):
        self.ref = f"{module}:{attr}"
        self.bootstrap = bootstrap
        self.delivery = delivery
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(path), str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "ALTO_BOOTSTRAP_SERVERS": bootstrap,
        }
        self.procs: dict[tuple[str, int], subprocess.Popen[bytes]] = {}
        self.logs = path

    def start(self, stage: str, replica: int) -> None:
        log = open(self.logs / f"{stage}-{replica}.log", "ab")  # noqa: SIM115
        self.procs[(stage, replica)] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "alto_stream.cli",
                "worker",
                self.ref,
                stage,
                "--delivery",
                self.delivery,
                "--bootstrap-servers",
                self.bootstrap,
            ],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def kill(self, key: tuple[str, int]) -> None:
        self.procs[key].send_signal(signal.SIGKILL)
        self.procs[key].wait()

    def crashed(self) -> list[str]:
        """Workers that exited on their own (a crash), with the end of their log."""
        out = []
        for (stage, replica), proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.logs / f"{stage}-{replica}.log").read_text(errors="replace")[-1500:]
                out.append(f"{stage}-{replica} exited {proc.returncode}:\n{tail}")
        return out

    async def show_where_stuck(self) -> None:
        """Ask every live worker to log where its tasks wait (SIGUSR1), for a failing test."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGUSR1)
        await asyncio.sleep(1.0)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _chaos_monkey(fleet: Fleet, kills: int, rng: random.Random, extra: str) -> list[float]:
    """Kill a random worker, restart it, repeat; add a replica of ``extra`` halfway.

    Returns when each kill happened (loop time).
    """
    loop = asyncio.get_running_loop()
    done = []
    for round_ in range(kills):
        await asyncio.sleep(rng.uniform(0.8, 1.6))
        key = rng.choice(sorted(fleet.procs))
        fleet.kill(key)
        done.append(loop.time())
        await asyncio.sleep(rng.uniform(0.1, 0.6))
        fleet.start(*key)
        if round_ == kills // 2:
            fleet.start(extra, 9)  # a new replica joins: a rebalance mid-run
    return done


@dataclasses.dataclass
class Run:
    """What a run under kills left: finals, the output topic, kills, ids, every topic."""

    finals: dict[str, Result]
    raw: list[tuple[str, dict[str, object] | None]]
    kills: int
    ids: list[str]
    topics: dict[str, list[Envelope]]


async def _run_under_kills(
    app_ref: tuple[str, str],
    queries: list[dict[str, str]],
    bootstrap: str,
    delivery: str,
    tmp_path: Path,
    extra: str,
    seed: int,
) -> Run:
    module, attr = app_ref
    app = load_app(f"{module}:{attr}")
    topology = app.topology()
    transport = KafkaTransport(bootstrap)
    await transport.ensure_topics(topology.topic_specs(partitions=3))
    fleet = Fleet(module, attr, bootstrap, delivery, tmp_path)
    for stage in topology.stages:
        for replica in range(2):
            fleet.start(stage, replica)
    ids: list[str] = []
    finals: dict[str, Result] = {}
    try:
        async with Client(app, transport) as client:
            ids = await client.push_many(queries)
            monkey = asyncio.create_task(_chaos_monkey(fleet, 5, random.Random(seed), extra))
            async for result in client.follow(ids, timeout=150, partials=False):
                assert result.query_id not in finals, "a final result showed twice"
                finals[result.query_id] = result
            finished = asyncio.get_running_loop().time()
            kills = sum(1 for at in await monkey if at < finished)
            crashed = fleet.crashed()
            assert not crashed, "\n".join(crashed)
    except TimeoutError as exc:
        await fleet.show_where_stuck()
        fleet.stop_all()
        unfinished = [q for q in ids if q not in finals]
        where = _where_they_stopped(unfinished, await _read_topics(transport, topology), topology)
        raise AssertionError(f"{exc}\nwhere the unfinished queries stopped:\n{where}") from exc
    except BaseException:
        await fleet.show_where_stuck()
        raise
    finally:
        fleet.stop_all()
    raw = await _read_all(transport, topology.output_topics()[topology.outputs[0]])
    return Run(finals, raw, kills, ids, await _read_topics(transport, topology))


def _where_they_stopped(
    unfinished: list[str], topics: dict[str, list[Envelope]], topology: Topology
) -> str:
    """For a failing run: the committed records of each unfinished query on each topic.

    Read in the stages' order, the first topic short of its records is where
    the query stopped (a record lost, or one never run).
    """
    lines = []
    for query_id in unfinished:
        counts = []
        for plan in topology.stages.values():
            mine = [e for e in topics[plan.output_topic] if e.ancestry.query_id == query_id]
            kinds = sorted({e.ancestry.kind.name for e in mine})
            counts.append(f"{plan.output_topic.rsplit('.', 1)[1]}={len(mine)}{kinds}")
        lines.append(f"  {query_id}: " + " ".join(counts))
    return "\n".join(lines)


async def _read_topics(transport: KafkaTransport, topology: Topology) -> dict[str, list[Envelope]]:
    """Every record of every topic a user can read (intermediates, outputs, dead letters)."""
    out: dict[str, list[Envelope]] = {}
    for plan in topology.stages.values():
        records = await read_topic(transport, plan.output_topic, topology.codec())
        out[plan.output_topic] = [env for _, env in records]
        dead = await read_topic(transport, plan.dead_letter_topic, topology.codec())
        out[plan.dead_letter_topic] = [env for _, env in dead]
    return out


async def _read_all(
    transport: KafkaTransport, topic: str
) -> list[tuple[str, dict[str, object] | None]]:
    """(query id, value) of every depth-0 record on ``topic``."""
    return [
        (env.ancestry.query_id, env.value)
        for _, env in await read_topic(transport, topic)
        if env.ancestry.depth == 0
    ]


DOCS = [
    f"Doc {i}: the quick brown fox. It jumps over {i} lazy dogs!\n\n"
    f"Second paragraph of {i}. Skip words are dropped. Done."
    for i in range(40)
]


# The transactional run once stalled in about 1 run of 5 (aiokafka's
# send_offsets_to_transaction never returned while the loop and a rebalance
# callback committed the same offsets); since what to commit is read under the
# partition's lock it has passed every run (about 30 by 2026-11-25).
@pytest.mark.parametrize("delivery", ["at-least-once", "transactional"])
async def test_sigkill_and_restart_loses_and_duplicates_nothing(
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
    delivery: str,
) -> None:
    with _app_module(tmp_path, unique_name) as module:
        run = await _run_under_kills(
            (module, "app"),
            [{"text": d} for d in DOCS],
            kafka_bootstrap,
            delivery,
            tmp_path,
            "shout",
            seed=len(delivery),
        )
    finals, raw, kills = run.finals, run.raw, run.kills
    assert kills >= 3, f"only {kills} workers were killed while queries were in flight"
    assert sorted(r.value["text"] for r in finals.values() if r.value) == sorted(
        textflow.reference(d) for d in DOCS
    )
    by_query: dict[str, set[str]] = {}
    for query_id, value in raw:
        by_query.setdefault(query_id, set()).add(json.dumps(value, sort_keys=True))
    assert set(by_query) == set(finals)
    assert all(len(values) == 1 for values in by_query.values()), "a query got two answers"
    if delivery == "transactional":
        assert len(raw) == len(finals), "read_committed output holds a duplicate"
    _check_every_topic(run, dict(zip(run.ids, DOCS, strict=True)))


def _expected(doc: str, stage: str) -> dict[tuple[int, ...], str | None]:
    """What ``stage`` of textflow must write for ``doc``: index path -> text (None: a skip)."""
    out: dict[tuple[int, ...], str | None] = {}
    for i, block in enumerate(textflow._blocks(doc)):
        sentences = textflow._sentences(block)
        if stage == "paragraphs":
            out[(i,)] = block
        if stage == "paragraph_text":
            out[(i,)] = textflow.reference(block)
        for j, sentence in enumerate(sentences):
            if stage == "sentences":
                out[(i, j)] = sentence
            if stage == "sentence_text":
                out[(i, j)] = textflow.reference(sentence)
            for k, word in enumerate(sentence.split()):
                if stage == "words":
                    out[(i, j, k)] = word
                if stage == "shout":
                    shouted = textflow._shout({"text": word})
                    out[(i, j, k)] = shouted["text"] if shouted else None
    if stage == "document":
        out[()] = textflow.reference(doc)
    return out


def _check_every_topic(run: Run, docs: dict[str, str]) -> None:
    """Every intermediate and output topic holds exactly the reference's fragments.

    Re-runs after a kill may write a fragment again (at-least-once: the reader
    is read_committed, so in the transactional mode aborted copies stay hidden)
    under a new attempt: every copy must carry the right value, no fragment may
    be missing, none may be invented, and no error or time-out marker or dead
    letter may appear.
    """
    for topic, records in run.topics.items():
        if topic.endswith(".dlq"):
            assert not records, f"{topic} holds {len(records)} dead letters"
            continue
        stage = topic.rsplit(".", 1)[1]
        seen: dict[tuple[str, tuple[int, ...]], set[str | None]] = {}
        for env in records:
            kind = env.ancestry.kind
            assert kind in (Kind.DATA, Kind.END, Kind.SKIP), f"{topic}: {kind} {env.ancestry}"
            assert env.ancestry.query_id in docs, f"{topic}: a record of an unknown query"
            if kind is Kind.END:
                continue
            text = None if kind is Kind.SKIP else str((env.value or {})["text"])
            seen.setdefault((env.ancestry.query_id, env.ancestry.index), set()).add(text)
        for query_id, doc in docs.items():
            want = _expected(doc, stage)
            got = {index: texts for (q, index), texts in seen.items() if q == query_id}
            assert set(got) == set(want), (
                f"{topic}: fragments of {doc!r}: missing {sorted(set(want) - set(got))}, "
                f"invented {sorted(set(got) - set(want))}"
            )
            for index, texts in got.items():
                assert texts == {want[index]}, f"{topic} {index}: {texts} != {want[index]!r}"


async def test_random_splits_under_kills_complete_once_from_one_attempt(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    queries = [{"text": f"q{i}"} for i in range(60)]
    with _app_module(tmp_path, unique_name) as module:
        run = await _run_under_kills(
            (module, "chaos"), queries, kafka_bootstrap, "at-least-once", tmp_path, "work", seed=7
        )
    finals, raw, kills = run.finals, run.raw, run.kills
    assert kills >= 3, f"only {kills} workers were killed while queries were in flight"
    assert len(finals) == len(queries)
    for result in finals.values():
        assert result.value is not None
        summary = json.loads(str(result.value["json"]))
        assert len(summary["attempts"]) <= 1, f"children of two attempts mixed: {summary}"
        assert summary["indices"] == list(range(len(summary["indices"])))
        assert summary["ok"]
    assert {q for q, _ in raw} == set(finals)
