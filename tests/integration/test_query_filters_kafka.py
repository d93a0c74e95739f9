"""``--query`` given several times keeps every one of those queries (tail, replay --print).

Found by a new user: the second ``--query`` silently replaced the first, so a
replay of two failed queries replayed one, with exit 0.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from alto_stream.cli import app as cli

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


def test_several_query_filters_keep_every_query(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    ref = f"workers.textflow:build({unique_name('filters')!r})"
    env = {"ALTO_BOOTSTRAP_SERVERS": kafka_bootstrap}
    runner = CliRunner()
    assert runner.invoke(cli, ["topics", "apply", ref], env=env).exit_code == 0
    pushed = runner.invoke(cli, ["push", ref, "one", "two", "three", "--json"], env=env)
    assert pushed.exit_code == 0, pushed.stderr
    ids = [json.loads(line)["query_id"] for line in pushed.stdout.splitlines()]
    assert len(ids) == 3
    topic = ref.split("'")[1] + ".input"
    wanted = ["--query", ids[0], "--query", ids[2]]
    tail = runner.invoke(
        cli, ["tail", topic, "--from-beginning", "--no-follow", "--json", *wanted], env=env
    )
    assert tail.exit_code == 0, tail.stderr
    assert sorted(json.loads(line)["query_id"] for line in tail.stdout.splitlines()) == sorted(
        [ids[0], ids[2]]
    )
    printed = runner.invoke(
        cli, ["replay", topic, "--from-beginning", "--print", "--json", *wanted], env=env
    )
    assert printed.exit_code == 0, printed.stderr
    assert len(printed.stdout.splitlines()) == 2
