"""A worker whose topics are missing names the command that creates them, with the app's ref."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from typer.testing import CliRunner

from alto_stream.cli import app as cli

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


def test_missing_topics_hint_names_the_app_as_given(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    ref = f"workers.textflow:build({unique_name('hint')!r})"
    result = CliRunner().invoke(
        cli, ["worker", ref, "shout"], env={"ALTO_BOOTSTRAP_SERVERS": kafka_bootstrap}
    )
    assert result.exit_code == 2
    assert "needs topics that do not exist" in result.stderr
    # Quoted for the shell: a new user pasted the unquoted factory call into bash.
    quoted = shlex.quote(ref)
    assert f"fix: `alto-stream topics apply {quoted}` first" in " ".join(result.stderr.split())
    assert "(`alto-stream up` creates them itself)" in " ".join(result.stderr.split())


def test_a_session_timeout_the_broker_refuses_is_one_clear_line(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # Found by a new user: `--session-timeout 2000` exited with status 1 on "Kafka
    # failed to join the consumer group: [Error 26] InvalidSessionTimeoutError".
    ref = f"workers.textflow:build({unique_name('session')!r})"
    env = {"ALTO_BOOTSTRAP_SERVERS": kafka_bootstrap}
    runner = CliRunner()
    assert runner.invoke(cli, ["topics", "apply", ref], env=env).exit_code == 0
    result = runner.invoke(cli, ["worker", ref, "shout", "--session-timeout", "2000"], env=env)
    assert result.exit_code == 2, result.stderr
    line = " ".join(result.stderr.split())
    assert "refused a group session timeout of 2000 s" in line
    assert "group.max.session.timeout.ms" in line and "fix: --session-timeout" in line


def test_a_stage_whose_group_is_new_says_it_runs_what_its_topic_holds(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # Found by a new user: a stage added to a running app (a new group) ran every record
    # its input topic still held, 4,844 of them, and nothing said so.
    ref = f"workers.textflow:build({unique_name('fresh')!r})"
    env = {**os.environ, "ALTO_BOOTSTRAP_SERVERS": kafka_bootstrap}
    runner = CliRunner()
    assert runner.invoke(cli, ["topics", "apply", ref], env=env).exit_code == 0
    pushed = runner.invoke(cli, ["push", ref, "one", "two", "three"], env=env)
    assert pushed.exit_code == 0, pushed.stderr

    def start() -> str:
        worker = subprocess.Popen(
            [sys.executable, "-m", "alto_stream.cli", "worker", ref, "paragraphs"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(12)  # started, and its records handled and committed
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=60)
        assert "stopped (consumed=" in out, out[-2000:]
        return " ".join(out.split())

    first = start()
    assert "has committed nothing yet, so it starts at the beginning of" in first
    assert "which holds 3 records" in first
    assert "has committed nothing yet" not in start()  # its offsets are committed now


def test_a_stage_whose_input_topic_changed_says_the_topology_changed(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    # Found by a new user: removing a map stage (`last` read `second`, then `first`)
    # made `last`'s group start at the beginning of `first` with no word, as its group
    # had commits (on `second`): finished queries ended twice, some in flight never.
    name = unique_name("moved")
    (tmp_path / "moved_app.py").write_text(
        "import os\n"
        "from alto_stream import App\n"
        f"app = App({name!r}, input_schema='alto.Text')\n"
        "@app.map(source=app.input, schema='alto.Text')\n"
        "def first(t): return t\n"
        "source = first\n"
        "if os.environ.get('WITH_SECOND'):\n"
        "    @app.map(source=first, schema='alto.Text')\n"
        "    def second(t): return t\n"
        "    source = second\n"
        "@app.map(source=source, schema='alto.Text')\n"
        "def last(t): return t\n"
    )
    env = {
        **os.environ,
        "ALTO_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", ".")]),
    }
    cwd = Path(__file__).resolve().parents[2]
    apply = subprocess.run(
        [sys.executable, "-m", "alto_stream.cli", "topics", "apply", "moved_app:app"],
        env={**env, "WITH_SECOND": "1"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert apply.returncode == 0, apply.stderr
    asyncio.run(_commit(kafka_bootstrap, f"{name}.last", f"{name}.second"))
    worker = subprocess.Popen(  # without `second`: `last` reads `first` now
        [sys.executable, "-m", "alto_stream.cli", "worker", "moved_app:app", "last"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(10)
    worker.send_signal(signal.SIGTERM)
    out, _ = worker.communicate(timeout=60)
    said = " ".join(out.split())
    assert f"its group {name}.last has committed offsets on {name}.second but none on" in said
    assert "the app's topology changed" in said and "drain the app" in said, said[-2000:]


async def _commit(bootstrap: str, group: str, topic: str) -> None:
    """Commit offset 0 of ``topic`` for ``group``, as if it had read it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.commit({partition: 0})
    finally:
        await consumer.stop()
