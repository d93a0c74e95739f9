"""`broker status`'s exit status: 0 running, 3 degraded, 1 not running (docs/broker.md).

Found by a new user: a 3-node cluster with one node killed said "degraded: 2 of 3
nodes running, answering" and exited 1, which the docs say means "not running".
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alto_stream import broker
from alto_stream.broker.cluster import ClusterStatus, Node
from alto_stream.cli import app as cli


def _report(tmp_path: Path, pids: list[int | None], *, answering: bool) -> ClusterStatus:
    nodes = tuple(
        Node(i, 9092 + i, 19092 + i, tmp_path / f"node-{i}", pid) for i, pid in enumerate(pids, 1)
    )
    return ClusterStatus(tmp_path, "127.0.0.1:9093", "abc", nodes, answering, len(nodes))


@pytest.mark.parametrize(
    ("pids", "answering", "code", "state"),
    [
        ([11, 12, 13], True, 0, "running"),
        ([11, None, 13], True, 3, "degraded: 2 of 3 nodes running, answering"),
        ([11, None, None], False, 1, "not answering: 1 of 3 nodes running"),
        ([None, None, None], False, 1, "not running"),
    ],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_exit_status_tells_degraded_from_not_running(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pids: list[int | None],
    answering: bool,
    code: int,
    state: str,
    as_json: bool,
) -> None:
    monkeypatch.setattr(
        broker, "status", lambda data_dir=None: _report(tmp_path, pids, answering=answering)
    )
    args = ["broker", "status", "-d", str(tmp_path), *(["--json"] if as_json else [])]
    result = CliRunner().invoke(cli, args, env={"COLUMNS": "200"})
    assert result.exit_code == code, result.output
    if not as_json:
        assert state in result.stdout
    else:  # a new user read "running": false for a degraded cluster that served on
        assert json.loads(result.stdout)["state"] == state.split(":")[0]
