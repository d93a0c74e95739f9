"""topics/<app>.toml of the AI apps: every topic it names is one of the app's, schemas match."""

from __future__ import annotations

import pytest

from alto_stream.ops.loading import load_app
from alto_stream.ops.topics import app_topic_specs
from alto_stream.topics import load_app_topics


@pytest.mark.parametrize("name", ["factcheck", "fanout", "rag", "cove"])
def test_topic_file_fits_the_app(name: str) -> None:
    topology = load_app(f"workers.{name}:app").topology()
    topic_file = load_app_topics(name)
    names = set(topology.topic_names())
    assert topic_file.path is not None
    assert set(topic_file.overrides) <= names, set(topic_file.overrides) - names
    specs = {s.name: s for s in app_topic_specs(topology)}
    for plan in topology.stages.values():
        assert specs[plan.output_topic].value_schema == plan.stage.schema
        assert specs[plan.dead_letter_topic].partitions == 1
        if plan.changelog_topic:  # co-partitioned with the aggregate's input
            assert specs[plan.changelog_topic].partitions == specs[plan.input_topic].partitions
    assert specs[topology.input_topic].value_schema == topology.input_schema
