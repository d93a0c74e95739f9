"""Group membership and topic layout on a real broker (issues 9.6, 9.8, 10.1 and 10.5).

- Topics get the cluster's size (up to 3) as replication and min.insync.replicas 2
  on a 3-node cluster; the topic file and the flags set them otherwise.
- A transactional take-over never runs again what the previous owner committed:
  after a chaos run, every intermediate topic read with read_committed holds the
  children of one attempt per split input.
- A backlog drains on a machine made busy on purpose without any worker losing
  its membership.
- A static member (group instance id) restarted at once gets its partitions back
  without a rebalance of the others; two workers given one instance id do not
  take each other's place for ever: one stops with a clear line.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_kill_kafka import Fleet, _app_module, _chaos_monkey

from alto_stream import broker
from alto_stream.client import Client
from alto_stream.ops.loading import load_app
from alto_stream.ops.topics import app_topic_specs, apply_topics
from alto_stream.runtime.kafka import KafkaOps, KafkaTransport
from alto_stream.testing import read_topic
from alto_stream.topics import TopicSpec
from alto_stream.transport import OutRecord

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]

_DROPPED = re.compile(
    r"session expired|UnknownMemberId|member_id was not recognized", re.IGNORECASE
)


@pytest.fixture
def busy_machine() -> Iterator[None]:
    """Two processes that burn CPU for the test's length (the machine made busy on purpose)."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def _write_module(folder: Path, module: str, source: str) -> None:
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


def _spawn(
    folder: Path, bootstrap: str, argv: list[str], log: str, **env: str
) -> subprocess.Popen[bytes]:
    """``alto-stream ARGV`` as a process (``env`` added), its output in ``folder/log``."""
    return subprocess.Popen(
        [sys.executable, "-m", "alto_stream.cli", *argv],
        env={**_env(folder, bootstrap), **env},
        cwd=ROOT,
        stdout=(folder / log).open("ab"),
        stderr=subprocess.STDOUT,
    )


def _drops(folder: Path) -> dict[str, int]:
    """Per worker log of ``folder``, how often its member was dropped from the group."""
    return {
        p.stem: len(_DROPPED.findall(p.read_text(errors="replace"))) for p in folder.glob("*.log")
    }


def _env(folder: Path, bootstrap: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)]),
        "ALTO_BOOTSTRAP_SERVERS": bootstrap,
    }


# -- replication ----------------------------------------------------------------------------

TWO_STAGES = """
from alto_stream import App

app = App({name!r}, input_schema="alto.Text")


@app.map(source=app.input, schema="alto.Text")
def upper(value):
    return {{"text": value["text"].upper()}}
"""


@pytest.mark.timeout(400)
def test_topics_follow_a_three_node_cluster_unless_told_otherwise(
    tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    cluster = broker.start(brokers=3, port=0, data_dir=tmp_path / "cluster")
    try:
        ops = KafkaOps(KafkaTransport(cluster.bootstrap))
        # App one: nothing configured, and a topic file that sets one topic.
        name = unique_name("rf")
        _write_module(tmp_path, name.replace("-", "_"), TWO_STAGES.format(name=name))
        topology = load_app(f"{name.replace('-', '_')}:app").topology()
        input_topic = topology.input_topic
        (tmp_path / f"{name}.toml").write_text(
            f'[topics."{input_topic}"]\nreplication = 2\nmin_insync_replicas = 1\n'
        )
        specs = app_topic_specs(topology, topics_dir=tmp_path)
        checks = asyncio.run(apply_topics(ops, specs))
        assert {c.status for c in checks} == {"created"}
        states = asyncio.run(ops.describe_topics([c.spec.name for c in checks]))
        for topic, state in states.items():
            want = (2, "1") if topic == input_topic else (3, "2")
            assert (state.replication, state.configs.get("min.insync.replicas")) == want, topic
        again = asyncio.run(apply_topics(ops, specs))
        assert {c.status for c in again} == {"ok"}, [c.differences for c in again]

        # App two: `topics apply --replication 2 --min-insync-replicas 2` (the CLI).
        other = unique_name("rf")
        module = other.replace("-", "_")
        _write_module(tmp_path, module, TWO_STAGES.format(name=other))
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "alto_stream.cli",
                "topics",
                "apply",
                f"{module}:app",
                "--replication",
                "2",
                "--min-insync-replicas",
                "2",
                "--json",
            ],
            env=_env(tmp_path, cluster.bootstrap),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        rows = json.loads(done.stdout)
        assert {(r["replication"], r["min_insync_replicas"]) for r in rows} == {(2, 2)}
        states = asyncio.run(ops.describe_topics([r["topic"] for r in rows]))
        assert {(s.replication, s.configs.get("min.insync.replicas")) for s in states.values()} == {
            (2, "2")
        }

        # A node dies: every admin call still answers, from the live nodes. Before, a
        # call sent to the dead node in the ~10 s before it was fenced failed at once
        # ("Kafka failed to list topics: NodeNotReadyError ... (node id 2)"): a new
        # user's `push` and `worker` exited with status 1 after a broker kill.
        dead = next(n for n in cluster.nodes if n.node_id == 2)
        assert dead.pid is not None
        os.kill(dead.pid, signal.SIGKILL)
        fresh = KafkaOps(KafkaTransport(cluster.bootstrap))
        for _ in range(8):
            assert input_topic in asyncio.run(fresh.list_topics())
            assert input_topic in asyncio.run(fresh.describe_topics([input_topic]))
    finally:
        broker.stop(tmp_path / "cluster")


async def test_topics_on_one_broker_get_one_replica(
    kafka_bootstrap: str, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    if len(kafka_bootstrap.split(",")) > 1 or os.environ.get("ALTO_TEST_BROKERS", "1") != "1":
        pytest.skip("needs a one-broker cluster")
    name = unique_name("rf1")
    _write_module(tmp_path, name.replace("-", "_"), TWO_STAGES.format(name=name))
    topology = load_app(f"{name.replace('-', '_')}:app").topology()
    ops = KafkaOps(KafkaTransport(kafka_bootstrap))
    checks = await apply_topics(ops, app_topic_specs(topology, topics_dir=tmp_path))
    assert {(c.spec.replication, c.spec.min_insync_replicas) for c in checks} == {(1, None)}
    states = await ops.describe_topics([c.spec.name for c in checks])
    assert {s.replication for s in states.values()} == {1}


# -- transactional take-over ------------------------------------------------------------------


async def _split_attempts(transport: KafkaTransport, topic: str) -> dict[str, set[str]]:
    """Per split input (parent id), the attempts whose children ``topic`` holds (committed)."""
    attempts: dict[str, set[str]] = defaultdict(set)
    for _, env in await read_topic(transport, topic):  # read_committed
        if env.ancestry.depth > 0 and env.ancestry.parent_id is not None:
            attempts[env.ancestry.parent_id].add(env.ancestry.path[-1].attempt)
    return attempts


# Before the take-over re-read committed offsets after fencing (commit "Group
# timing settings ..."), aiokafka's offsets, fetched while the previous owner's
# last transaction was still completing, made new owners split inputs again.
@pytest.mark.timeout(1200)
async def test_transactional_take_over_splits_each_input_once(
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
    busy_machine: None,
) -> None:
    # By hand, a longer run (more rebalances): ALTO_CHAOS_QUERIES, ALTO_CHAOS_KILLS;
    # ALTO_CHAOS_APP=app runs the nested text app (three splits, three aggregates).
    count = int(os.environ.get("ALTO_CHAOS_QUERIES", "120"))
    kills = int(os.environ.get("ALTO_CHAOS_KILLS", "8"))
    attr = os.environ.get("ALTO_CHAOS_APP", "chaos")
    queries = [
        {"text": f"Doc {i}: a b c. D e {i}!\n\nSecond {i}. Skip words. Done."}
        if attr == "app"
        else {"text": f"q{i}"}
        for i in range(count)
    ]
    with _app_module(tmp_path, unique_name) as module:
        app = load_app(f"{module}:{attr}")
        topology = app.topology()
        transport = KafkaTransport(kafka_bootstrap)
        await transport.ensure_topics(topology.topic_specs(partitions=3))
        fleet = Fleet(module, attr, kafka_bootstrap, "transactional", tmp_path)
        for stage in topology.stages:
            for replica in range(2):
                fleet.start(stage, replica)
        try:
            async with Client(app, transport) as client:
                ids = await client.push_many(queries)
                extra = "work" if attr == "chaos" else "shout"
                monkey = asyncio.create_task(_chaos_monkey(fleet, kills, random.Random(3), extra))
                finals = [r async for r in client.follow(ids, timeout=900, partials=False)]
                await monkey
            crashed = fleet.crashed()
            assert not crashed, "\n".join(crashed)
        finally:
            fleet.stop_all()
        assert len(finals) == len(queries)
        intermediate = [
            plan.output_topic
            for plan in topology.stages.values()
            if plan.name not in topology.outputs
        ]
        split_twice = {}
        for topic in intermediate:
            for parent, attempts in (await _split_attempts(transport, topic)).items():
                if len(attempts) > 1:
                    split_twice[parent] = (topic, sorted(attempts))
    assert not split_twice, (
        f"{len(split_twice)} inputs split twice: {list(split_twice.items())[:5]}"
    )


# -- liveness under load ------------------------------------------------------------------------

BACKLOG = """
from alto_stream import App

app = App({name!r}, input_schema="alto.Text")


def _burn(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


@app.split(source=app.input, schema="alto.Text")
def words(query):
    return [{{"text": w}} for w in query["text"].split()]


@app.map(source=words, schema="alto.Text")
def crunch(word):
    _burn(40_000)
    return {{"text": word["text"].upper()}}


@app.aggregate(source=crunch, closes=words, schema="alto.Text")
def join(children):
    return {{"text": " ".join(c.value["text"] for c in children if c.ok)}}
"""


# Before the loop yielded every 50 ms, plain-def stages held the event loop for
# whole buffers of records: on this busy machine the members of `crunch` were
# dropped again and again ("Heartbeat session expired", UnknownMemberIdError).
@pytest.mark.timeout(600)
async def test_a_backlog_drains_on_a_busy_machine_without_losing_membership(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path, busy_machine: None
) -> None:
    name = unique_name("backlog")
    module = name.replace("-", "_")
    _write_module(tmp_path, module, BACKLOG.format(name=name))
    app = load_app(f"{module}:app")
    topology = app.topology()
    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(topology.topic_specs(partitions=4))
    rng = random.Random(5)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    queries = [{"text": " ".join(rng.choice(words) for _ in range(6))} for _ in range(800)]
    procs: list[subprocess.Popen[bytes]] = []
    async with Client(app, transport) as client:
        producer = transport.producer()
        await producer.start()
        bad = [OutRecord(topology.input_topic, rng.randbytes(40), (), None) for _ in range(50)]
        await producer.send_many(bad)
        await producer.stop()
        ids = await client.push_many(queries)
        for stage in topology.stages:
            for replica in range(2):
                procs.append(
                    _spawn(
                        tmp_path,
                        kafka_bootstrap,
                        ["worker", f"{module}:app", stage],
                        f"{stage}-{replica}.log",
                        ALTO_SESSION_TIMEOUT="6",
                        ALTO_HEARTBEAT_INTERVAL="0.5",
                    )
                )
        try:
            finals = [r async for r in client.follow(ids, timeout=500, partials=False)]
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=60)
    dropped = _drops(tmp_path)
    assert len(finals) == len(queries)
    assert not any(dropped.values()), f"members dropped: {dropped}"


# -- static membership -------------------------------------------------------------------------

ECHO = """
import asyncio
from alto_stream import App

app = App({name!r}, input_schema="alto.Text")


@app.map(source=app.input, schema="alto.Text")
async def echo(value):
    await asyncio.sleep(0.001)
    return value
"""


@pytest.mark.timeout(300)
async def test_a_static_member_restarted_at_once_takes_its_partitions_back(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    name = unique_name("static")
    module = name.replace("-", "_")
    _write_module(tmp_path, module, ECHO.format(name=name))
    app = load_app(f"{module}:app")
    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(app.topology().topic_specs(partitions=4))

    def start(replica: int) -> subprocess.Popen[bytes]:
        argv = ["worker", f"{module}:app", "echo", "--instance-id", f"echo.{replica}"]
        argv += ["--session-timeout", "30", "--heartbeat-interval", "0.5"]
        argv += ["--stats-file", str(tmp_path / f"{replica}.json"), "--replica-id", str(replica)]
        return _spawn(tmp_path, kafka_bootstrap, argv, f"echo-{replica}.log")

    def assignments(replica: int) -> int:
        return int(json.loads((tmp_path / f"{replica}.json").read_text())["rebalances"])

    procs = {0: start(0), 1: start(1)}
    try:
        async with Client(app, transport) as client:
            first = await client.push_many([{"text": f"a{i}"} for i in range(40)])
            assert len([r async for r in client.follow(first, timeout=120)]) == 40
            await asyncio.sleep(2.0)  # a stats snapshot after the group settled
            settled = assignments(0)
            procs[1].kill()
            procs[1].wait()
            procs[1] = start(1)  # the same instance id, well within the session timeout
            second = await client.push_many([{"text": f"b{i}"} for i in range(40)])
            began = asyncio.get_running_loop().time()
            assert len([r async for r in client.follow(second, timeout=25)]) == 40
            recovered = asyncio.get_running_loop().time() - began
            await asyncio.sleep(1.0)
            # The survivor kept its assignment: no rebalance on the restart.
            assert assignments(0) == settled
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(timeout=60)
    print(f"static member restarted: its partitions' queries done {recovered:.1f} s after")


@pytest.mark.timeout(200)
async def test_two_workers_with_one_instance_id_end_with_one_clear_line(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    # Found by trying it: two workers started with one --instance-id took each other's
    # place in the group about once a second for ever, logging "member_id was not
    # recognized" and neither keeping its partitions. Now one of them stops.
    name = unique_name("twin")
    module = name.replace("-", "_")
    _write_module(tmp_path, module, ECHO.format(name=name))
    app = load_app(f"{module}:app")
    transport = KafkaTransport(kafka_bootstrap)
    await transport.ensure_topics(app.topology().topic_specs(partitions=2))
    argv = ["worker", f"{module}:app", "echo", "--instance-id", "twin"]
    argv += ["--session-timeout", "10", "--heartbeat-interval", "0.5"]
    first = _spawn(tmp_path, kafka_bootstrap, argv, "first.log")
    await asyncio.sleep(8.0)  # in the group before the twin comes
    second = _spawn(tmp_path, kafka_bootstrap, argv, "second.log")
    procs = [first, second]
    try:
        deadline = asyncio.get_running_loop().time() + 120
        while all(p.poll() is None for p in procs):
            assert asyncio.get_running_loop().time() < deadline, "both still running"
            await asyncio.sleep(0.5)
        gone = next(p for p in procs if p.poll() is not None)
        kept = next(p for p in procs if p is not gone)
        assert gone.returncode == 2
        log = (tmp_path / ("first.log" if gone is first else "second.log")).read_text()
        line = " ".join(log.split())
        assert "uses group instance id 'twin'" in line, log[-2000:]
        assert "fix: give each worker its own --instance-id" in line
        # The one left keeps its place and serves the stage.
        async with Client(app, transport) as client:
            ids = await client.push_many([{"text": f"t{i}"} for i in range(10)])
            assert len([r async for r in client.follow(ids, timeout=60)]) == 10
        assert kept.poll() is None
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)


async def _committed_after_commits(
    bootstrap: str, group: str, topic: str, tries: int, *, fence_first: bool
) -> list[tuple[int, int | None]]:
    """Commit offset i in a transaction, then read the group's committed offset; stale reads.

    With ``fence_first`` a new producer of the same transactional id starts
    before the read (what a new owner does since the fix): its initialisation
    waits for the previous transaction to complete.
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    tp = TopicPartition(topic, 0)
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await reader.start()
    stale: list[tuple[int, int | None]] = []

    async def producer() -> AIOKafkaProducer:
        made = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{group}.tx")
        await made.start()
        return made

    current = await producer()
    try:
        for i in range(1, tries + 1):
            async with current.transaction():
                await current.send_offsets_to_transaction({tp: i}, group)
            if fence_first:
                fenced, current = current, await producer()
                await fenced.stop()
            seen = await reader.committed(tp)
            if seen != i:
                stale.append((i, seen))
    finally:
        await current.stop()
        await reader.stop()
    return stale


async def test_a_fencing_producer_start_makes_committed_offsets_current(
    kafka_bootstrap: str, unique_name: Callable[[str], str], busy_machine: None
) -> None:
    topic = unique_name("stable")
    await KafkaTransport(kafka_bootstrap).ensure_topics([TopicSpec(topic, 1, 1)])
    naive = await _committed_after_commits(
        kafka_bootstrap, unique_name("g"), topic, 300, fence_first=False
    )
    fenced = await _committed_after_commits(
        kafka_bootstrap, unique_name("g"), topic, 300, fence_first=True
    )
    print(
        f"stale committed offsets read right after a commit: {len(naive)} of 300; "
        f"after a fencing producer start: {len(fenced)} of 300"
    )
    assert fenced == []
