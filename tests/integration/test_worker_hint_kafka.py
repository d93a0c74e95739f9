"""A worker whose topics are missing names the command that creates them, with the app's ref."""

from __future__ import annotations

import shlex
from collections.abc import Callable

import pytest
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
