"""Replication decided for the cluster, and the consumer group's timing settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from alto_stream.errors import ConfigError
from alto_stream.settings import GroupTiming
from alto_stream.topics import TopicSpec, load_topic_file


@pytest.mark.parametrize(
    ("brokers", "replication", "min_insync"),
    [(1, 1, None), (2, 2, None), (3, 3, 2), (5, 3, 2)],
)
def test_replication_follows_the_cluster(
    brokers: int, replication: int, min_insync: int | None
) -> None:
    spec = TopicSpec("t").for_cluster(brokers)
    assert (spec.replication, spec.min_insync_replicas) == (replication, min_insync)
    configs = spec.kafka_configs()
    assert configs.get("min.insync.replicas") == (None if min_insync is None else str(min_insync))


def test_what_is_set_wins_over_the_cluster_defaults() -> None:
    spec = TopicSpec("t", replication=2).for_cluster(3)
    assert (spec.replication, spec.min_insync_replicas) == (2, None)
    spec = TopicSpec("t", min_insync_replicas=1).for_cluster(3)
    assert (spec.replication, spec.min_insync_replicas) == (3, 1)
    with pytest.raises(ConfigError, match="needs 3 brokers, the cluster has 1"):
        TopicSpec("t", replication=3).for_cluster(1)
    with pytest.raises(ConfigError, match="exceeds replication"):
        TopicSpec("t", replication=2, min_insync_replicas=3)
    with pytest.raises(ConfigError, match="exceeds replication"):
        TopicSpec("t", min_insync_replicas=2).for_cluster(1)
    with pytest.raises(ConfigError, match="set min_insync_replicas"):
        TopicSpec("t", configs={"min.insync.replicas": "2"})


def test_the_topic_file_sets_replication_and_min_insync(tmp_path: Path) -> None:
    path = tmp_path / "app.toml"
    path.write_text(
        "[defaults]\nreplication = 3\nmin_insync_replicas = 1\n"
        '[topics."app.in"]\nreplication = 2\nmin_insync_replicas = 2\n'
    )
    topic_file = load_topic_file(path)
    assert (topic_file.replication, topic_file.min_insync_replicas) == (3, 1)
    declared = topic_file.spec("app.in")
    assert (declared.replication, declared.min_insync_replicas) == (2, 2)
    other = topic_file.spec("app.out").for_cluster(3)
    assert (other.replication, other.min_insync_replicas) == (3, 1)
    path.write_text("[defaults]\nmin_insync_replicas = 0\n")
    with pytest.raises(ConfigError, match="min_insync_replicas must be an integer >= 1"):
        load_topic_file(path)


def test_group_timing_reads_flags_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert GroupTiming() == GroupTiming.from_env()
    monkeypatch.setenv("ALTO_SESSION_TIMEOUT", "9")
    monkeypatch.setenv("ALTO_HEARTBEAT_INTERVAL", "2.5")
    monkeypatch.setenv("ALTO_GROUP_INSTANCE_ID", "pod-1")
    timing = GroupTiming.from_env(heartbeat_interval=1.0)
    assert (timing.session_timeout, timing.heartbeat_interval, timing.instance_id) == (
        9.0,
        1.0,
        "pod-1",
    )
    monkeypatch.setenv("ALTO_SESSION_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="ALTO_SESSION_TIMEOUT must be a number"):
        GroupTiming.from_env()


def test_group_timing_refuses_what_kafka_would_misbehave_with() -> None:
    with pytest.raises(ConfigError, match="at most a third"):
        GroupTiming(session_timeout=6.0, heartbeat_interval=3.0)
    with pytest.raises(ConfigError, match="positive"):
        GroupTiming(session_timeout=0)
    with pytest.raises(ConfigError, match="empty"):
        GroupTiming(instance_id=" ")


def test_up_gives_workers_the_timing_and_static_ids(tmp_path: Path) -> None:
    from alto_stream.cli.up_cmd import _specs
    from alto_stream.cli.worker_cmd import Delivery

    timing = GroupTiming(session_timeout=8.0, heartbeat_interval=1.0)
    static = ("app", "h1")
    specs = _specs("m:app", {"a": 2}, "h:1", Delivery.AT_LEAST_ONCE, None, tmp_path, timing, static)
    for i, spec in enumerate(specs):
        argv = list(spec.argv)
        assert argv[argv.index("--session-timeout") + 1] == "8.0"
        assert argv[argv.index("--heartbeat-interval") + 1] == "1.0"
        assert argv[argv.index("--instance-id") + 1] == f"app.a.h1.{i}"
    dynamic = _specs("m:app", {"a": 1}, "h:1", Delivery.AT_LEAST_ONCE, None, tmp_path, timing, None)
    assert "--instance-id" not in dynamic[0].argv
