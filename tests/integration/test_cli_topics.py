"""``alto-stream topics`` against a real broker, and the exit codes of bad usage."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alto_stream.cli import app as cli

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


@pytest.fixture
def make_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique_name: Callable[[str], str]
) -> Callable[[], tuple[str, str]]:
    """Writes a module holding a textflow app with a unique name; returns (ref, name)."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def make() -> tuple[str, str]:
        name = unique_name("clitopics")
        module = "m_" + name.replace("-", "_")
        (tmp_path / f"{module}.py").write_text(
            f"from workers.textflow import build\napp = build({name!r})\n"
        )
        return f"{module}:app", name

    return make


@pytest.fixture
def run(kafka_bootstrap: str) -> Callable[..., tuple[int, str, str]]:
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(cli, list(args), env={"ALTO_BOOTSTRAP_SERVERS": kafka_bootstrap})
        return result.exit_code, result.stdout, result.stderr

    return invoke


def test_apply_creates_then_checks_the_app_topics(
    make_app: Callable[[], tuple[str, str]], run: Callable[..., tuple[int, str, str]]
) -> None:
    ref, name = make_app()
    code, out, _ = run("topics", "apply", ref, "--dry-run", "--json")
    assert code == 1
    assert {t["status"] for t in json.loads(out)} == {"missing"}

    code, out, _ = run("topics", "apply", ref, "--json")
    assert code == 0
    checks = {t["topic"]: t for t in json.loads(out)}
    assert len(checks) == 18
    assert {t["status"] for t in checks.values()} == {"created"}
    assert checks[f"{name}.document.changelog"]["cleanup_policy"] == "compact"

    code, out, _ = run("topics", "apply", ref)
    assert code == 0
    assert f"{name}.words.dlq" in out
    assert "ok" in out

    code, out, _ = run("topics", "apply", ref, "--partitions", "2", "--json")
    assert code == 1
    differs = [t for t in json.loads(out) if t["status"] == "differs"]
    assert len(differs) == 18
    assert differs[0]["differences"] == ["partitions: want 2, has 3"]


def _configs(bootstrap: str, topic: str) -> dict[str, str]:
    from alto_stream.ops.topics import describe_topic
    from alto_stream.runtime.kafka import KafkaOps, KafkaTransport

    return asyncio.run(describe_topic(KafkaOps(KafkaTransport(bootstrap)), topic)).configs


def _set_configs(bootstrap: str, topic: str, configs: dict[str, str]) -> None:
    from alto_stream.runtime.kafka import KafkaOps, KafkaTransport

    asyncio.run(KafkaOps(KafkaTransport(bootstrap)).alter_topic_configs(topic, configs))


def test_changelogs_get_compaction_configs_and_apply_sets_them_on_old_ones(
    make_app: Callable[[], tuple[str, str]],
    run: Callable[..., tuple[int, str, str]],
    kafka_bootstrap: str,
) -> None:
    # Found in a soak: changelogs had Kafka's segment.ms (7 days), so compaction never
    # touched them in 35 min (112,345 records, 48,147 of them tombstones).
    ref, name = make_app()
    changelog = f"{name}.sentence_text.changelog"
    code, _, _ = run("topics", "apply", ref)
    assert code == 0
    configs = _configs(kafka_bootstrap, changelog)
    assert configs["segment.ms"] == "3600000"
    assert configs["delete.retention.ms"] == "3600000"
    assert configs["min.cleanable.dirty.ratio"] == "0.1"
    assert _configs(kafka_bootstrap, f"{name}.input")["segment.ms"] == "604800000"

    # A changelog made before (Kafka's defaults), with a config of its own set by hand:
    # apply sets what it should and keeps the rest.
    old = {"segment.ms": "604800000", "max.message.bytes": "2000000"}
    _set_configs(kafka_bootstrap, changelog, old)
    deadline = time.monotonic() + 20
    while _configs(kafka_bootstrap, changelog)["segment.ms"] != "604800000":
        assert time.monotonic() < deadline, "the old config never showed"
        time.sleep(0.2)
    code, out, _ = run("topics", "apply", ref, "--json")
    assert code == 0, out
    (check,) = [t for t in json.loads(out) if t["topic"] == changelog]
    assert check["status"] == "updated"
    assert "segment.ms: set to 3600000 (was 604800000)" in check["differences"]
    deadline = time.monotonic() + 20
    while (configs := _configs(kafka_bootstrap, changelog))["segment.ms"] != "3600000":
        assert time.monotonic() < deadline, f"segment.ms never set: {configs}"
        time.sleep(0.2)
    assert configs["max.message.bytes"] == "2000000"
    assert configs["cleanup.policy"] == "compact"


def test_list_and_describe(
    make_app: Callable[[], tuple[str, str]], run: Callable[..., tuple[int, str, str]]
) -> None:
    ref, name = make_app()
    assert run("topics", "apply", ref)[0] == 0
    code, out, _ = run("topics", "list", "--prefix", f"{name}.", "--json")
    assert code == 0
    rows = {r["topic"]: r for r in json.loads(out)}
    assert len(rows) == 18
    assert rows[f"{name}.input"] == {
        "topic": f"{name}.input",
        "partitions": 3,
        "replication": 1,
        "cleanup_policy": "delete",
        "offsets": 0,
    }
    code, out, _ = run("topics", "describe", f"{name}.sentence_text.changelog", "--json")
    assert code == 0
    described = json.loads(out)
    assert described["partitions"] == 3
    assert described["configs"]["cleanup.policy"] == "compact"
    assert described["offsets"]["0"] == {"first": 0, "end": 0}
    code, out, _ = run("topics", "describe", f"{name}.input")
    assert code == 0
    assert "3 partitions" in out
    # The table shows every config a changelog is given (two were left out of it).
    code, out, _ = run("topics", "describe", f"{name}.sentence_text.changelog")
    assert code == 0
    from alto_stream.topics import CHANGELOG_CONFIGS

    for key, value in CHANGELOG_CONFIGS.items():
        assert any(key in line and value in line for line in out.splitlines()), key


def test_bad_usage_exits_2(
    make_app: Callable[[], tuple[str, str]], run: Callable[..., tuple[int, str, str]]
) -> None:
    ref, name = make_app()
    code, _, err = run("topics", "describe", f"{name}.nope")
    assert code == 2
    assert f"unknown topic '{name}.nope'" in err
    code, _, err = run("topics", "apply", "no_such_module_abc:app")
    assert code == 2
    assert "unknown app 'no_such_module_abc:app'" in err
    code, _, err = run("topics", "apply", f"{ref.split(':')[0]}:missing")
    assert code == 2
    assert "expected an App" in err


def test_an_unreachable_broker_exits_2_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALTO_CONNECT_TIMEOUT", "0.5")
    began = time.monotonic()
    result = CliRunner().invoke(cli, ["topics", "list", "--bootstrap-servers", "127.0.0.1:1"])
    assert result.exit_code == 2
    assert "Kafka does not answer at 127.0.0.1:1" in result.stderr
    assert time.monotonic() - began < 5


async def test_offsets_of_topics_just_created_log_no_errors(
    kafka_bootstrap: str, unique_name: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    # What `topics apply` and the demo do: create, then read offsets at once. aiokafka
    # retries a lookup that meets a leader not elected yet; it logged an ERROR line for
    # each retry, which a user read as a failure (seen on every fresh demo).
    from alto_stream.runtime.kafka import KafkaTransport
    from alto_stream.runtime.kafka.ops import KafkaOps
    from workers.textflow import build

    transport = KafkaTransport(kafka_bootstrap)
    for _ in range(3):
        specs = build(unique_name("fresh")).topology().topic_specs(partitions=8)
        await transport.ensure_topics(specs)
        with caplog.at_level(logging.ERROR, logger="aiokafka"):
            states = await KafkaOps(transport).describe_topics([s.name for s in specs])
        assert {state.partitions for state in states.values()} == {8}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_lags_of_several_groups_come_from_one_query(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # `up`'s live table asks for every stage's lag every 2 s: one admin client and one
    # consumer for all the groups (it used to be a pair per stage).
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    from alto_stream.runtime.kafka import KafkaTransport
    from alto_stream.runtime.kafka.ops import KafkaOps
    from alto_stream.topics import TopicSpec

    transport = KafkaTransport(kafka_bootstrap)
    first, second = unique_name("lag-a"), unique_name("lag-b")
    await transport.ensure_topics([TopicSpec(first, partitions=2), TopicSpec(second, partitions=1)])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for partition, count in ((0, 5), (1, 3)):
            for _ in range(count):
                await producer.send_and_wait(first, b"x", partition=partition)
        for _ in range(4):
            await producer.send_and_wait(second, b"y", partition=0)
    finally:
        await producer.stop()
    behind, done = unique_name("g-behind"), unique_name("g-done")
    commits = {
        behind: {TopicPartition(first, 0): 2},  # partition 1 never committed: from its start
        done: {TopicPartition(second, 0): 4},
    }
    for group, offsets in commits.items():
        consumer = AIOKafkaConsumer(  # no auto-commit: its position would be committed at stop
            bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            consumer.assign(list(offsets))
            await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
        finally:
            await consumer.stop()
    never = unique_name("g-never")
    lags = await KafkaOps(transport).group_lags(
        {behind: [first], done: [second], never: [second, unique_name("no-such-topic")]}
    )
    assert lags == {
        behind: {(first, 0): 3, (first, 1): 3},
        done: {(second, 0): 0},
        never: {(second, 0): 4},
    }
    assert await KafkaOps(transport).group_lag(behind, [first]) == lags[behind]


async def test_two_creators_at_once_each_report_only_what_they_created(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # Found by a new user: two `up` of one app started in the same second both
    # printed "created topic ..." for every topic: a topic the other had just created
    # (TopicAlreadyExists in the broker's answer) was counted as created.
    from alto_stream.runtime.kafka import KafkaTransport
    from workers.textflow import build

    specs = build(unique_name("race")).topology().topic_specs(partitions=2)
    first, second = await asyncio.gather(
        KafkaTransport(kafka_bootstrap).ensure_topics(specs),
        KafkaTransport(kafka_bootstrap).ensure_topics(specs),
    )
    assert sorted(first + second) == sorted(s.name for s in specs)
