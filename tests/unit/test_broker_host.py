"""``broker start --host``: the address nodes listen on and advertise (no Java needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from alto_stream.broker import cluster, config
from alto_stream.errors import BrokerError, ConfigError


def _props(text: str) -> dict[str, str]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_a_host_is_listened_on_advertised_and_in_the_bootstrap(tmp_path: Path) -> None:
    layout = config.Layout.create(brokers=2, port=9092, host="10.251.0.4")
    props = _props(config.server_properties(layout, 2, tmp_path))
    assert props["listeners"] == "PLAINTEXT://10.251.0.4:9093,CONTROLLER://10.251.0.4:9193"
    assert props["advertised.listeners"] == "PLAINTEXT://10.251.0.4:9093"
    assert props["controller.quorum.voters"] == "1@10.251.0.4:9192,2@10.251.0.4:9193"
    assert layout.bootstrap == "10.251.0.4:9092,10.251.0.4:9093"


def test_the_default_host_stays_loopback(tmp_path: Path) -> None:
    layout = config.Layout.create()
    props = _props(config.server_properties(layout, 1, tmp_path))
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"


def test_the_host_is_saved_and_a_layout_without_one_loads_as_loopback(tmp_path: Path) -> None:
    config.Layout.create(port=9500, host="broker-1.example").save(tmp_path)
    loaded = config.Layout.load(tmp_path)
    assert loaded is not None and loaded.host == "broker-1.example"
    raw = json.loads((tmp_path / "cluster.json").read_text())
    del raw["host"]  # a cluster.json written before --host existed
    (tmp_path / "cluster.json").write_text(json.dumps(raw))
    old = config.Layout.load(tmp_path)
    assert old is not None and old.host == "127.0.0.1"


@pytest.mark.parametrize("host", ["0.0.0.0", "::1", "10.0.0.1:9092", "a b", ""])
def test_a_host_no_client_could_dial_is_refused(host: str) -> None:
    with pytest.raises(BrokerError, match="--host"):
        config.Layout.create(host=host)


def test_an_existing_cluster_keeps_its_host(tmp_path: Path) -> None:
    config.Layout.create(port=9500, host="10.251.0.4").save(tmp_path)
    with pytest.raises(BrokerError, match=re.escape("host=10.251.0.4; got host=10.251.0.5")):
        cluster._layout_for(tmp_path, None, None, None, "10.251.0.5")
    same = cluster._layout_for(tmp_path, None, None, None, "10.251.0.4")
    assert same.host == "10.251.0.4"


@pytest.mark.parametrize("port", [9500, 0])
@pytest.mark.parametrize("host", ["192.0.2.77", "not-a-host.invalid"])
def test_starting_on_an_address_this_machine_lacks_says_so(
    tmp_path: Path, port: int, host: str
) -> None:
    # Before, with --port 0: "no free range of 1 broker + controller ports; fix: pass
    # --port" (exit 1), for an address of another machine or a name that resolves to none.
    with pytest.raises(ConfigError, match=f"--host {host} is not an address of this machine"):
        cluster.start(port=port, data_dir=tmp_path, host=host)


def test_a_secured_listener_on_another_host_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    with pytest.raises(BrokerError, match="--security with --host is not supported"):
        cluster.start(data_dir=tmp_path / "b", port=0, host="10.251.0.4", security="tls")
    assert not (tmp_path / "b").exists()


def test_the_cli_refuses_a_foreign_host_as_bad_usage(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "alto_stream.cli", "broker", "start", "--host", "192.0.2.77",
         "--port", "0", "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: --host 192.0.2.77 is not an address of this machine")
    assert len(done.stderr.strip().splitlines()) == 1


def test_status_of_a_cluster_with_a_node_down_says_degraded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Found by a new user: with 2 of 3 nodes alive (and serving), `broker status`
    # said "not running".
    from alto_stream.cli.broker_cmd import DEGRADED_EXIT, _print_status, cluster_state

    nodes = tuple(
        cluster.Node(i, 9091 + i, 9191 + i, tmp_path / f"node-{i}", 100 + i if i != 2 else None)
        for i in (1, 2, 3)
    )
    report = cluster.ClusterStatus(tmp_path, "127.0.0.1:9092", "abc", nodes, True, 2)
    state, code = cluster_state(report)
    _print_status(report, state)
    assert "degraded: 2 of 3 nodes running, answering" in capsys.readouterr().out
    assert not report.running
    assert code == DEGRADED_EXIT  # not 1, "not running" (tests/unit/test_broker_status_exit.py)
