"""compose.yaml: a single-node KRaft Apache Kafka in step with the local broker and fixture."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from alto_stream import broker, testing
from alto_stream.broker import config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def kafka_env(compose: dict[str, Any]) -> dict[str, str]:
    env = compose["services"]["kafka"]["environment"]
    assert all(isinstance(v, str) for v in env.values()), "quote every value: compose wants strings"
    return dict(env)


def _listeners(value: str) -> dict[str, str]:
    return dict(item.split("://", 1) for item in value.split(","))


def test_kafka_is_the_pinned_apache_image(compose: dict[str, Any]) -> None:
    image = compose["services"]["kafka"]["image"]
    assert image == f"apache/kafka:{broker.KAFKA_VERSION}"
    assert image == testing.KAFKA_IMAGE


def test_kafka_is_a_single_kraft_node(kafka_env: dict[str, str]) -> None:
    assert set(kafka_env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node_id = kafka_env["KAFKA_NODE_ID"]
    voters = kafka_env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert voters == [f"{node_id}@kafka:9093"]
    assert len(base64.urlsafe_b64decode(kafka_env["CLUSTER_ID"] + "==")) == 16
    listeners = _listeners(kafka_env["KAFKA_LISTENERS"])
    assert listeners["CONTROLLER"] == ":9093"
    assert kafka_env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    advertised = _listeners(kafka_env["KAFKA_ADVERTISED_LISTENERS"])
    assert "CONTROLLER" not in advertised
    assert advertised["INTERNAL"] == "kafka:9092"
    protocols = _listeners(kafka_env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].replace(":", "://"))
    assert set(protocols) == set(listeners)


def test_host_reaches_kafka_at_the_default_bootstrap(
    compose: dict[str, Any], kafka_env: dict[str, str]
) -> None:
    advertised = _listeners(kafka_env["KAFKA_ADVERTISED_LISTENERS"])
    assert advertised["EXTERNAL"] == config.HOST + ":" + str(config.DEFAULT_PORT)
    external_port = _listeners(kafka_env["KAFKA_LISTENERS"])["EXTERNAL"].lstrip(":")
    assert compose["services"]["kafka"]["ports"] == [f"127.0.0.1:9092:{external_port}"]


def test_kafka_settings_match_the_test_fixture(kafka_env: dict[str, str]) -> None:
    fixture_env = testing._container_env("127.0.0.1:9092")
    differ = {"KAFKA_CONTROLLER_QUORUM_VOTERS", "KAFKA_ADVERTISED_LISTENERS"}
    for key, value in fixture_env.items():
        if key not in differ:
            assert kafka_env[key] == value, key


def test_kafka_settings_match_the_local_broker(kafka_env: dict[str, str], tmp_path: Path) -> None:
    text = config.server_properties(config.Layout.create(1, 9092), 1, tmp_path)
    props = dict(line.split("=", 1) for line in text.splitlines() if not line.startswith("#"))
    for key in (
        "auto.create.topics.enable",
        "group.initial.rebalance.delay.ms",
        "offsets.topic.replication.factor",
        "transaction.state.log.min.isr",
    ):
        env_key = "KAFKA_" + key.upper().replace(".", "_")
        assert kafka_env[env_key] == props[key], key


def test_worker_template_reaches_kafka_inside_the_network(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert worker["profiles"] == ["workers"]
    assert worker["environment"]["ALTO_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert worker["command"][0] == "worker"
    dockerfile = ROOT / worker["build"]["context"] / worker["build"]["dockerfile"]
    assert 'ENTRYPOINT ["alto-stream"]' in dockerfile.read_text()
