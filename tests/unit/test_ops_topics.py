"""An app's topic specs (topology + topics/<app>.toml) and how a cluster's topics compare."""

from __future__ import annotations

from pathlib import Path

from alto_stream.ops.topics import TopicCheck, app_topic_specs, compare, config_changes
from alto_stream.runtime.kafka import TopicState
from alto_stream.topics import TopicSpec
from workers import textflow

TOML = """
[defaults]
partitions = 2
configs = { "retention.ms" = "1000" }

[topics."tt.sentence_text"]
partitions = 5
"""


def test_specs_follow_the_topic_file_and_co_partition_changelogs(tmp_path: Path) -> None:
    (tmp_path / "tt.toml").write_text(TOML)
    topology = textflow.build("tt").topology()
    specs = {s.name: s for s in app_topic_specs(topology, topics_dir=tmp_path)}
    assert set(specs) == set(topology.topic_names())
    assert specs["tt.input"].partitions == 2
    assert specs["tt.input"].configs == {"retention.ms": "1000"}
    assert specs["tt.input"].value_schema == "alto.Text"
    assert specs["tt.sentence_text"].partitions == 5
    # paragraph_text reads tt.sentence_text: its changelog gets the same 5 partitions
    assert specs["tt.paragraph_text.changelog"].partitions == 5
    assert specs["tt.paragraph_text.changelog"].cleanup_policy == "compact"
    assert specs["tt.words.dlq"].value_schema == "alto.DeadLetter"


def test_command_line_defaults_replace_the_file_defaults_only(tmp_path: Path) -> None:
    (tmp_path / "tt.toml").write_text(TOML)
    topology = textflow.build("tt").topology()
    specs = {
        s.name: s
        for s in app_topic_specs(topology, partitions=7, replication=1, topics_dir=tmp_path)
    }
    assert specs["tt.input"].partitions == 7
    assert specs["tt.sentence_text"].partitions == 5


def test_an_app_without_a_topic_file_gets_the_defaults(tmp_path: Path) -> None:
    specs = app_topic_specs(textflow.build("nofile").topology(), topics_dir=tmp_path)
    assert {s.partitions for s in specs} == {3}


def test_compare_reports_partitions_replication_and_configs() -> None:
    spec = TopicSpec(
        "t", partitions=3, replication=1, cleanup_policy="compact", configs={"retention.ms": "5"}
    )
    same = TopicState("t", 3, 1, {"cleanup.policy": "compact", "retention.ms": "5", "x": "y"}, {})
    assert compare(spec, same) == ()
    other = TopicState("t", 2, 3, {"cleanup.policy": "delete", "retention.ms": "9"}, {})
    assert compare(spec, other) == (
        "partitions: want 3, has 2",
        "replication: want 1, has 3",
        "cleanup.policy: want compact, has delete",
        "retention.ms: want 5, has 9",
    )
    check = TopicCheck(spec, other, "differs", compare(spec, other))
    assert check.to_dict()["differences"][0] == "partitions: want 3, has 2"


def test_changelogs_get_configs_that_let_compaction_keep_them_small(tmp_path: Path) -> None:
    # Found in a soak: changelogs had Kafka's segment.ms (7 days), which compaction never
    # reaches: after 35 min at 2 q/s sentence_text's held 112,345 records (48,147
    # tombstones), and every take-over re-read them all.
    (tmp_path / "tt.toml").write_text(
        TOML + '[topics."tt.document.changelog"]\nconfigs = { "segment.ms" = "60000" }\n'
    )
    specs = {
        s.name: s for s in app_topic_specs(textflow.build("tt").topology(), topics_dir=tmp_path)
    }
    changelog = specs["tt.paragraph_text.changelog"].kafka_configs()
    assert changelog["segment.ms"] == "3600000"  # rolled hourly: compactable after an hour
    assert changelog["delete.retention.ms"] == "3600000"
    assert changelog["min.cleanable.dirty.ratio"] == "0.1"
    assert changelog["retention.ms"] == "1000"  # the file's defaults still apply
    assert specs["tt.document.changelog"].configs["segment.ms"] == "60000"  # the file wins
    assert "segment.ms" not in specs["tt.input"].configs  # only changelogs


def test_config_changes_leave_the_cleanup_policy_alone() -> None:
    spec = TopicSpec(
        "t", partitions=3, replication=1, cleanup_policy="compact", configs={"segment.ms": "5"}
    )
    state = TopicState("t", 3, 1, {"cleanup.policy": "delete", "segment.ms": "9"}, {})
    assert config_changes(spec, state) == {"segment.ms": "5"}
