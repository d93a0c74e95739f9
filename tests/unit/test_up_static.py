"""`up --static-membership` on several hosts: ids of each host's own, and no endless restarts.

Found by a new user: two `up APP --static-membership` (two hosts, as docs/hosts.md
suggests) gave their workers the same ids APP.STAGE.REPLICA; each pair took each
other's place, the one put out exited 2 ("another consumer ... uses group instance
id"), and `up` restarted it, for ever.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alto_stream.cli import app as cli
from alto_stream.cli.up_cmd import _hold_instance_ids, _host_id, _specs
from alto_stream.cli.worker_cmd import Delivery
from alto_stream.errors import ConfigError
from alto_stream.ops.supervisor import ProcessSpec, Supervisor
from alto_stream.settings import GroupTiming

pytestmark = pytest.mark.timeout(30)


def _ids(host: str) -> list[str]:
    specs = _specs(
        "workers.textflow:app",
        {"words": 1, "shout": 2},
        "127.0.0.1:1",
        Delivery.AT_LEAST_ONCE,
        None,
        Path("/tmp/none"),
        GroupTiming(),
        ("textflow", host),
    )
    return [list(s.argv)[list(s.argv).index("--instance-id") + 1] for s in specs]


def test_each_host_gives_its_workers_ids_of_their_own_the_same_at_each_start() -> None:
    assert _ids("host-a") == ["textflow.words.host-a.0", "textflow.shout.host-a.0",
                              "textflow.shout.host-a.1"]  # fmt: skip
    assert not set(_ids("host-a")) & set(_ids("host-b"))
    assert _ids("host-a") == _ids("host-a")  # a restarted `up` takes its partitions back


def test_the_host_id_is_this_machines_name_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.setattr(socket, "gethostname", lambda: "gpu 7@lab")
    assert _host_id(None) == "gpu-7-lab"  # what Kafka takes in an instance id
    assert _host_id("rack1.n2") == "rack1.n2"
    with pytest.raises(ConfigError, match="bad --host-id 'a/b'"):
        _host_id("a/b")


def test_a_second_up_of_one_app_with_one_host_id_is_refused_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALTO_HOME", str(tmp_path))
    held = _hold_instance_ids("textflow", "h1")  # the first `up`
    try:
        result = CliRunner().invoke(
            cli,
            ["up", "workers.textflow:app", "--static-membership", "--host-id", "h1"],
            env={"ALTO_BOOTSTRAP_SERVERS": "127.0.0.1:1", "ALTO_HOME": str(tmp_path)},
        )
        assert result.exit_code == 2, result.output
        assert "another `up --static-membership` of app 'textflow'" in result.stderr
        assert "fix: --host-id NAME" in result.stderr
        _hold_instance_ids("textflow", "h2").close()  # another host id is free
    finally:
        held.close()
    _hold_instance_ids("textflow", "h1").close()  # free once the first `up` ends


def test_a_worker_refused_with_exit_2_is_not_restarted(tmp_path: Path) -> None:
    twin = [
        sys.executable,
        "-c",
        "import sys; print(\"error: another consumer of group 'a.s' uses group instance id "
        "'a.s.0': ...\", file=sys.stderr); sys.exit(2)",
    ]
    log = tmp_path / "s-0.log"
    supervisor = Supervisor([ProcessSpec("s-0", twin, log_file=log)], backoff=0.01)
    supervisor.start()
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            supervisor.poll()
            time.sleep(0.02)
    finally:
        supervisor.stop(timeout=5)
    child = supervisor.children[0]
    assert (child.restarts, child.given_up, child.last_exit) == (0, True, 2)
    assert supervisor.events == [
        "s-0 exited with status 2 (error: another consumer of group 'a.s' uses group "
        "instance id 'a.s.0': ...): not restarted (refused: the same command would be "
        "refused again)"
    ]


def test_a_supervised_worker_that_finds_no_kafka_exits_1_to_be_restarted() -> None:
    # Kafka down is not a refusal: the restart after it is back must still come.
    env = {"ALTO_BOOTSTRAP_SERVERS": "127.0.0.1:1", "ALTO_CONNECT_TIMEOUT": "0.2"}
    argv = ["worker", "workers.textflow:app", "words"]
    alone = CliRunner().invoke(cli, argv, env=env)
    supervised = CliRunner().invoke(cli, argv, env={**env, "ALTO_PARENT_PID": "1"})
    assert alone.exit_code == 2, alone.output
    assert supervised.exit_code == 1, supervised.output
    assert "error: Kafka does not answer at 127.0.0.1:1" in supervised.stderr


def test_ups_lines_keep_the_brackets_of_a_workers_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A new user's `up` without a terminal printed "fix: pip install 'alto-stream'":
    # Rich took the worker's "[llm]" for markup.
    from rich.console import Console

    from alto_stream.cli import up_cmd

    monkeypatch.setattr(up_cmd, "err", Console(stderr=True, highlight=False, soft_wrap=True))
    up_cmd.say(
        "generate-0 exited with status 2 (error: the llama_cpp backend needs "
        "llama-cpp-python: `pip install 'alto-stream[llm]'`): not restarted",
        "yellow",
    )
    assert "pip install 'alto-stream[llm]'" in capsys.readouterr().err


def test_supervise_ends_once_every_process_of_a_stage_was_refused() -> None:
    # Found by a new user scripting `up`: every worker refused (ALTO_ADMISSION=abc, a
    # deleted input topic), none restarted, and `up` ran on with no worker (exit 0
    # after --duration, or never ending).
    import asyncio

    from alto_stream.ops.supervisor import supervise

    refused = [sys.executable, "-c", "import sys; sys.exit(2)"]
    runs = [sys.executable, "-c", "import time; time.sleep(60)"]
    supervisor = Supervisor(
        [
            ProcessSpec("a-0", refused, stage="a"),
            ProcessSpec("a-1", refused, stage="a"),
            ProcessSpec("b-0", runs, stage="b"),
        ],
        backoff=0.01,
    )
    began = time.monotonic()
    signalled = asyncio.run(supervise(supervisor, interval=0.05, duration=30, stop_timeout=5))
    assert not signalled and time.monotonic() - began < 10
    assert supervisor.refused_stages() == ["a"]
    assert all(not c.running for c in supervisor.children)  # b-0 stopped with the rest
