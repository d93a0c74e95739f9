"""The local broker without Java: layout, generated config, pid files, install checks, CLI."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alto_stream import broker, testing
from alto_stream.broker import config, installer, nodes, probe
from alto_stream.cli import app
from alto_stream.errors import BrokerError


def _props(text: str) -> dict[str, str]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


# -- layout and server.properties -------------------------------------------------


def test_three_node_layout_spreads_ports_and_lists_every_voter() -> None:
    layout = config.Layout.create(brokers=3, port=9092)
    assert layout.broker_ports() == [9092, 9093, 9094]
    assert layout.controller_ports() == [9192, 9193, 9194]
    assert layout.bootstrap == "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
    assert layout.quorum_voters() == "1@127.0.0.1:9192,2@127.0.0.1:9193,3@127.0.0.1:9194"


def test_node_properties_for_three_nodes(tmp_path: Path) -> None:
    layout = config.Layout.create(brokers=3, port=9092)
    props = _props(config.server_properties(layout, 2, tmp_path / "data"))
    assert props["node.id"] == "2"
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9093,CONTROLLER://127.0.0.1:9193"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9093"
    assert props["controller.quorum.voters"] == layout.quorum_voters()
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["transaction.state.log.replication.factor"] == "3"
    assert props["transaction.state.log.min.isr"] == "2"
    assert props["auto.create.topics.enable"] == "false"
    assert props["group.initial.rebalance.delay.ms"] == "0"


def test_single_node_properties_replicate_internal_topics_once(tmp_path: Path) -> None:
    props = _props(config.server_properties(config.Layout.create(1, 9092), 1, tmp_path))
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["default.replication.factor"] == "1"


def test_node_id_outside_the_cluster_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match=r"1\.\.3"):
        config.server_properties(config.Layout.create(3, 9092), 4, tmp_path)


@pytest.mark.parametrize(
    ("brokers", "port", "controller_port", "message"),
    [
        (3, 9092, 9093, "overlap"),
        (0, 9092, 9192, "at least 1"),
        (2, 65535, 9192, "1..65535"),
    ],
)
def test_bad_layouts_are_rejected(
    brokers: int, port: int, controller_port: int, message: str
) -> None:
    with pytest.raises(BrokerError, match=message):
        config.Layout(brokers, port, controller_port, config.new_cluster_id())


def test_layout_round_trips_and_a_corrupt_file_says_how_to_fix(tmp_path: Path) -> None:
    assert config.Layout.load(tmp_path) is None
    layout = config.Layout.create(3, 21000)
    layout.save(tmp_path)
    assert config.Layout.load(tmp_path) == layout
    (tmp_path / "cluster.json").write_text('{"brokers": 3}')
    with pytest.raises(BrokerError, match="delete the data dir"):
        config.Layout.load(tmp_path)


def test_cluster_ids_are_kafka_uuids() -> None:
    ids = {config.new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_jvm_options_take_the_heap_and_reject_nonsense(tmp_path: Path) -> None:
    opts = config.jvm_options("384m", tmp_path / "log4j2.properties", tmp_path)
    assert "-Xmx384m" in opts
    assert f"-Dkafka.logs.dir={tmp_path}" in opts
    with pytest.raises(BrokerError, match="512m"):
        config.jvm_options("lots", tmp_path, tmp_path)


def test_log4j2_config_writes_to_the_node_log_dir() -> None:
    text = config.log4j2_properties()
    assert "${sys:kafka.logs.dir}/server.log" in text
    assert "rootLogger.appenderRef" in text


# -- starting refuses before any JVM runs -----------------------------------------


def test_start_refuses_a_different_size_than_the_data_dir_holds(tmp_path: Path) -> None:
    config.Layout.create(1, broker.free_base_port(1)).save(tmp_path)
    with pytest.raises(BrokerError, match="brokers=1; got brokers=3"):
        broker.start(brokers=3, data_dir=tmp_path)


def test_start_reports_a_port_in_use(tmp_path: Path) -> None:
    base = broker.free_base_port(1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base))
        taken.listen()
        assert broker.port_in_use(base)
        with pytest.raises(
            BrokerError, match=f"port {base} .client port of node 1. is already in use"
        ):
            broker.start(1, base, tmp_path)


def test_free_base_port_avoids_busy_and_ephemeral_ports() -> None:
    low, high = nodes.ephemeral_ports()
    for _ in range(20):
        base = broker.free_base_port(3)
        ports = [base, base + 1, base + 2, base + 100, base + 101, base + 102]
        assert not any(broker.port_in_use(p) for p in ports)
        assert all(p < low or p > high for p in ports)


# -- pid files --------------------------------------------------------------------


@pytest.fixture
def fake_kafka(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process whose command line looks like node 1's Kafka in ``tmp_path``."""
    props = tmp_path / "node-1" / "server.properties"
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "kafka.Kafka", str(props)]
    )
    yield process
    process.kill()
    process.wait()


def test_read_pid_ignores_garbage(tmp_path: Path) -> None:
    path = tmp_path / "kafka.pid"
    assert nodes.read_pid(path) is None
    for text in ("", "abc", "-5", "0"):
        path.write_text(text)
        assert nodes.read_pid(path) is None
    path.write_text("1234\n")
    assert nodes.read_pid(path) == 1234


def test_a_pid_counts_only_when_it_runs_this_nodes_kafka(
    tmp_path: Path, fake_kafka: subprocess.Popen[bytes]
) -> None:
    files = nodes.NodeFiles(tmp_path, 1)
    assert nodes.process_alive(fake_kafka.pid, files.properties)
    assert not nodes.process_alive(fake_kafka.pid, tmp_path / "other" / "server.properties")
    assert not nodes.process_alive(os.getpid())  # alive, but not Kafka
    files.root.mkdir(parents=True)
    files.write_pid(fake_kafka.pid)
    assert files.running_pid() == fake_kafka.pid


def test_stop_cleans_a_dead_pid_file_and_stops_what_runs(
    tmp_path: Path, fake_kafka: subprocess.Popen[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    config.Layout.create(2, broker.free_base_port(2)).save(tmp_path)
    live, dead = nodes.NodeFiles(tmp_path, 1), nodes.NodeFiles(tmp_path, 2)
    for files in (live, dead):
        files.root.mkdir()
    live.write_pid(fake_kafka.pid)
    finished = subprocess.Popen(["true"])
    finished.wait()
    dead.write_pid(finished.pid)

    report = broker.status(tmp_path)
    assert [n.alive for n in report.nodes] == [True, False]
    assert not report.running

    assert broker.stop(tmp_path, timeout=5.0) == [1]
    assert fake_kafka.wait(timeout=5) == -15  # SIGTERM
    assert "stale pid file" in caplog.text
    assert not live.pid_file.exists()
    assert not dead.pid_file.exists()
    assert broker.stop(tmp_path) == []


def test_status_of_an_empty_dir_says_no_cluster(tmp_path: Path) -> None:
    report = broker.status(tmp_path)
    assert report.nodes == ()
    assert not report.running
    assert report.to_dict()["nodes"] == []


# -- install ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_351"', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ("no version here", None),
    ],
)
def test_java_major_version(output: str, major: int | None) -> None:
    assert installer.java_major_version(output) == major


def test_pom_pins_kafka_and_the_log4j_binding() -> None:
    pom = installer.pom_xml()
    assert "<artifactId>kafka_2.13</artifactId><version>4.1.1</version>" in pom
    assert "<artifactId>log4j-slf4j-impl</artifactId>" in pom
    assert f"<version>{installer.DEPENDENCY_PLUGIN_VERSION}</version>" in pom


def _fake_kafka_home(root: Path, jar: str) -> Path:
    (root / "libs").mkdir(parents=True)
    (root / "libs" / jar).write_bytes(b"")
    return root


def test_kafka_home_is_used_when_it_holds_kafka_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _fake_kafka_home(tmp_path / "kafka", "kafka_2.13-4.1.1.jar")
    monkeypatch.setenv("KAFKA_HOME", str(home))
    assert installer.installed_libs() == home / "libs"
    old = _fake_kafka_home(tmp_path / "old", "kafka_2.13-3.9.0.jar")
    monkeypatch.setenv("KAFKA_HOME", str(old))
    with pytest.raises(BrokerError, match="needs Apache Kafka 4"):
        installer.installed_libs()
    monkeypatch.setenv("KAFKA_HOME", str(tmp_path / "nothing"))
    with pytest.raises(BrokerError, match=r"no libs/kafka_2\.13"):
        installer.installed_libs()


def _path_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **scripts: str) -> None:
    """PATH = a dir holding ``java`` (the real one) and the given scripts, nothing else."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java = installer.find_java()
    (bin_dir / "java").symlink_to(java)
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    monkeypatch.delenv("KAFKA_HOME", raising=False)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(bin_dir))


def test_install_without_mvn_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _path_with(tmp_path, monkeypatch)
    with pytest.raises(BrokerError, match=r"mvn not found.*KAFKA_HOME"):
        installer.install(tmp_path / "cache")


def test_install_reports_mvn_output_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _path_with(tmp_path, monkeypatch, mvn="echo 'Could not resolve dependencies: 42'; exit 1\n")
    with pytest.raises(
        BrokerError, match=r"(?s)exit 1.*Could not resolve dependencies: 42"
    ) as info:
        installer.install(tmp_path / "cache")
    assert "--strict-checksums" in str(info.value)
    assert not (tmp_path / "cache" / ".installed").exists()


def test_install_without_java_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrokerError, match=r"java not found.*17"):
        installer.install(tmp_path / "cache")


def test_a_marker_without_its_jars_is_not_an_installation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAFKA_HOME", raising=False)
    (tmp_path / "libs").mkdir()
    (tmp_path / ".installed").write_text("kafka_2.13-4.1.1.jar\n")
    assert installer.installed_libs(tmp_path) is None
    (tmp_path / "libs" / "kafka_2.13-4.1.1.jar").write_bytes(b"")
    assert installer.installed_libs(tmp_path) == tmp_path / "libs"


# -- the metadata probe -----------------------------------------------------------


def _string(text: str | None) -> bytes:
    if text is None:
        return struct.pack(">h", -1)
    return struct.pack(">h", len(text)) + text.encode()


def _metadata_v4_response() -> bytes:
    body = struct.pack(">ii", 7, 0)  # correlation id, throttle
    body += struct.pack(">i", 2)
    for node_id, port in ((1, 9092), (2, 9093)):
        body += struct.pack(">i", node_id) + _string("127.0.0.1") + struct.pack(">i", port)
        body += _string(None)
    body += _string("cluster-x") + struct.pack(">i", 1)
    body += struct.pack(">i", 1)  # one topic
    body += struct.pack(">h", 0) + _string("orders") + struct.pack(">b", 0)
    body += struct.pack(">i", 2)
    for index in (1, 0):
        body += struct.pack(">hii", 0, index, 2 - index)
        body += struct.pack(">iii", 2, 1, 2) + struct.pack(">ii", 1, 2 - index)
    return body


def test_metadata_probe_parses_brokers_and_topics() -> None:
    metadata = probe._parse(_metadata_v4_response())
    assert metadata.cluster_id == "cluster-x"
    assert [(b.node_id, b.port) for b in metadata.brokers] == [(1, 9092), (2, 9093)]
    (topic,) = metadata.topics
    assert topic.name == "orders"
    assert [p.index for p in topic.partitions] == [0, 1]
    assert topic.partitions[0].leader == 2
    assert topic.replication == 2


def test_metadata_probe_rejects_a_truncated_response() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    data = _metadata_v4_response()[:30]

    def answer() -> None:
        conn, _ = server.accept()
        conn.recv(1024)
        conn.sendall(struct.pack(">i", len(data)) + data)
        conn.close()

    thread = threading.Thread(target=answer)
    thread.start()
    with pytest.raises(ConnectionError, match="malformed"):
        probe.fetch_metadata("127.0.0.1", port)
    thread.join()
    server.close()


# -- CLI --------------------------------------------------------------------------


def test_cli_status_of_no_cluster_exits_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["broker", "status", "--data-dir", str(tmp_path), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["running"] is False


def test_cli_errors_end_with_a_message_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config.Layout.create(1, broker.free_base_port(1)).save(tmp_path)
    monkeypatch.setattr(
        sys, "argv", ["alto-stream", "broker", "start", "-n", "3", "-d", str(tmp_path)]
    )
    from alto_stream.cli import main

    with pytest.raises(SystemExit) as info:
        main()
    # Bad usage, as every command's (it was 1, "failed while running", before 2026-12-03).
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err
    assert "got brokers=3" in " ".join(err.split())
    assert "Traceback" not in err


# -- the testing helpers ----------------------------------------------------------


def test_unique_names_are_valid_kafka_names_and_never_repeat() -> None:
    names = {testing.unique_name("my test/topic") for _ in range(500)}
    assert len(names) == 500
    for name in names:
        assert name.startswith("my-test-topic-")
        assert all(c.isalnum() or c in "._-" for c in name)


@pytest.mark.parametrize("docker_host", ["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:1"])
def test_no_docker_engine_means_no_container(
    docker_host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    assert testing._docker_answers() is False
    monkeypatch.setenv("ALTO_TEST_DOCKER", "0")
    assert testing._docker_answers() is False
