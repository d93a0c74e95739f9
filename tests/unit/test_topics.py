"""Topic definitions (topics/*.toml) and their check against schemas/."""

from __future__ import annotations

from pathlib import Path

import pytest

from alto_stream.codec import SchemaRegistry
from alto_stream.errors import ConfigError
from alto_stream.topics import (
    DEFAULT_PARTITIONS,
    TopicFile,
    TopicSpec,
    check_against_schemas,
    load_all_topic_files,
    load_app_topics,
    load_topic_file,
)

ROOT = Path(__file__).resolve().parents[2]
REPO_TOPICS = ROOT / "topics"
REPO_SCHEMAS = ROOT / "schemas"

SAMPLE = """
[defaults]
partitions = 4
replication = 1
configs = { "retention.ms" = 1000, "compression.type" = "lz4" }

[topics."app.in"]
value_schema = "alto.Query"

[topics."app.agg.changelog"]
partitions = 2
cleanup_policy = "delete, compact"
configs = { "min.cleanable.dirty.ratio" = 0.1, "preallocate" = true }
"""


def write(tmp_path: Path, text: str, name: str = "app.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_shipped_topic_file_parses_and_names_existing_schemas() -> None:
    files = load_all_topic_files(REPO_TOPICS)
    assert "example" in files
    registry = SchemaRegistry(REPO_SCHEMAS)
    for app, topic_file in files.items():
        specs = topic_file.declared()
        assert specs, f"topics/{app}.toml declares no topic"
        assert check_against_schemas(specs, registry) == []
        for spec in specs:
            # A changelog holds the fragments as they came, of whatever schema each has.
            if not spec.name.endswith(".changelog"):
                assert spec.value_schema is not None, f"{spec.name} has no value schema"


def test_example_declares_a_compacted_changelog() -> None:
    topic_file = load_app_topics("example", REPO_TOPICS)
    changelog = topic_file.spec("example.answers.changelog")
    assert changelog.cleanup_policy == "compact"
    assert changelog.kafka_configs()["cleanup.policy"] == "compact"
    assert changelog.partitions == topic_file.spec("example.answers").partitions


def test_defaults_and_overrides(tmp_path: Path) -> None:
    topic_file = load_topic_file(write(tmp_path, SAMPLE))
    assert [s.name for s in topic_file.declared()] == ["app.in", "app.agg.changelog"]
    entry = topic_file.spec("app.in")
    assert (entry.partitions, entry.replication, entry.cleanup_policy) == (4, 1, "delete")
    assert entry.value_schema == "alto.Query"
    assert entry.configs == {"retention.ms": "1000", "compression.type": "lz4"}
    changelog = topic_file.spec("app.agg.changelog")
    assert changelog.partitions == 2
    assert changelog.cleanup_policy == "compact,delete"
    assert changelog.kafka_configs() == {
        "retention.ms": "1000",
        "compression.type": "lz4",
        "min.cleanable.dirty.ratio": "0.1",
        "preallocate": "true",
        "cleanup.policy": "compact,delete",
    }


def test_the_file_wins_over_hints_which_win_over_defaults(tmp_path: Path) -> None:
    topic_file = load_topic_file(write(tmp_path, SAMPLE))
    undeclared = topic_file.spec("app.mid", value_schema="alto.Text", cleanup_policy="compact")
    assert (undeclared.partitions, undeclared.value_schema) == (4, "alto.Text")
    assert undeclared.cleanup_policy == "compact"
    declared = topic_file.spec("app.in", value_schema="alto.Text", cleanup_policy="compact")
    assert (declared.value_schema, declared.cleanup_policy) == ("alto.Query", "compact")
    changelog = topic_file.spec("app.agg.changelog", cleanup_policy="compact")
    assert changelog.cleanup_policy == "compact,delete"


def test_an_app_without_a_file_gets_defaults(tmp_path: Path) -> None:
    topic_file = load_app_topics("nothing-here", tmp_path)
    assert topic_file == TopicFile()
    spec = topic_file.spec("x.in")
    assert (spec.partitions, spec.replication, spec.cleanup_policy) == (
        DEFAULT_PARTITIONS,
        None,  # decided for the cluster when created: see test_replication_follows_the_cluster
        "delete",
    )
    assert spec.kafka_configs() == {"cleanup.policy": "delete"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[defaults]\npartitons = 3\n", "unknown key.*partitons"),
        ("[whatever]\n", "unknown key.*whatever"),
        ('[topics."a"]\nreplicas = 3\n', "unknown key.*replicas"),
        ("[defaults]\npartitions = 0\n", "partitions must be an integer >= 1, got 0"),
        ("[defaults]\nreplication = true\n", "replication must be an integer >= 1"),
        ('[topics."a"]\npartitions = "3"\n', "partitions must be an integer >= 1"),
        ('[topics."a"]\ncleanup_policy = "forever"\n', "cleanup_policy must be one of"),
        ('[topics."a b"]\n', "bad topic name"),
        ('[topics."a"]\nconfigs = { "cleanup.policy" = "compact" }\n', "set cleanup_policy"),
        ('[topics."a"]\nconfigs = { "x" = [1] }\n', "must be a string or number"),
        ('[topics."a"]\nvalue_schema = 3\n', "value_schema must be a schema name"),
        ("[topics]\na = 3\n", "expected a table"),
        ("this is not toml", "cannot read a topic file"),
    ],
)
def test_bad_files_are_config_errors_naming_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_topic_file(path)
    assert str(path) in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_topic_file(tmp_path / "absent.toml")


@pytest.mark.parametrize("app", ["", "../etc", "a/b", ".hidden"])
def test_bad_app_names_are_refused(tmp_path: Path, app: str) -> None:
    with pytest.raises(ConfigError, match="bad app name"):
        load_app_topics(app, tmp_path)


def test_topic_spec_validates_when_built_in_code() -> None:
    assert TopicSpec("ok.topic-1_x").partitions == DEFAULT_PARTITIONS
    with pytest.raises(ConfigError, match="bad topic name"):
        TopicSpec("x" * 250)
    with pytest.raises(ConfigError, match="bad topic name"):
        TopicSpec("..")
    with pytest.raises(ConfigError, match="replication"):
        TopicSpec("t", replication=0)


def test_check_against_schemas_reports_unknown_schemas_and_duplicates() -> None:
    registry = SchemaRegistry(REPO_SCHEMAS)
    specs = [
        TopicSpec("a", value_schema="alto.Text"),
        TopicSpec("b", value_schema="alto.Nope"),
        TopicSpec("a"),
    ]
    problems = check_against_schemas(specs, registry)
    assert len(problems) == 2
    assert "alto.Nope" in problems[0]
    assert "alto.Text" in problems[0]  # the known names are listed
    assert "declared twice" in problems[1]
