"""Every command's ``--help`` shows its help texts whole, POSIX usage lines and bare flags."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.rich_utils
from typer.main import get_command
from typer.testing import CliRunner

from alto_stream.cli import app as cli
from alto_stream.codec import Codec
from alto_stream.errors import ConfigError
from alto_stream.ops import logs
from alto_stream.ops.queries import read_queries

ROOT = Path(__file__).resolve().parents[2]


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, command in getattr(group, "commands", {}).items():  # typer's own click
        yield from _commands(command, (*path, name))


def _help(path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", 400)  # one line per option
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def _flat(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


@pytest.mark.parametrize("path", list(_commands(get_command(cli))), ids=" ".join)
def test_help_shows_every_help_text_whole(
    path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    output = _help(path, monkeypatch)
    usage = next(line for line in output.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage, usage
    assert "<bool>" not in output
    command: Any = get_command(cli)
    for name in path:
        command = command.commands[name]
    for param in command.params:
        declared = getattr(param, "help", None)
        if declared and not getattr(param, "hidden", False):
            literal = declared.replace("\\[", "[")  # as rich markup escapes it
            assert _flat(literal) in _flat(output), (path, literal)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("push",), "Show partial results too [default: only when following one query]."),
        (("up",), "Where worker logs and stats go [default: a new dir in ALTO_HOME/runs]."),
        (("trace",), "Read records from this time on [default: every record kept]."),
        (("push",), "Usage: alto-stream push [OPTIONS] APP [TEXT]..."),
        (("worker",), "Usage: alto-stream worker [OPTIONS] APP STAGE"),
        (("trace",), "Usage: alto-stream trace [OPTIONS] QUERY_ID"),
        (("tail",), "Usage: alto-stream tail [OPTIONS] TOPIC..."),
        ((), "--log-format"),
    ],
)
def test_help_texts_the_issue_names(
    path: tuple[str, ...], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert expected in _flat(_help(path, monkeypatch))


def test_push_help_as_a_process() -> None:
    env = {**os.environ, "TERMINAL_WIDTH": "200", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "alto_stream.cli", "push", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    assert "[default: only when following one query]" in result.stdout
    assert "push [OPTIONS] APP [TEXT]..." in result.stdout
    assert not re.search(r"--follow .*<bool>", result.stdout)


def test_push_value_names_the_missing_and_the_unknown_field() -> None:
    with pytest.raises(ConfigError) as info:
        read_queries([], '{"txt": "x"}', None, "alto.Text", Codec())
    message = str(info.value)
    assert "missing field 'text' (string)" in message
    assert "unknown field 'txt'" in message
    assert "is None" not in message
    # Before: "fix: give the fields text ..." for a query that has them (a new user's push).
    with pytest.raises(ConfigError, match=r"unknown field 'meta'; fix: drop it \(alto.Query has"):
        read_queries([], '{"text": "x", "meta": {}}', None, "alto.Query", Codec())


def test_push_of_a_file_without_a_query_names_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    # Before: "no query given: expected TEXT, --value JSON or --file", for a file given.
    with pytest.raises(ConfigError, match=r"empty.jsonl holds no query"):
        read_queries([], None, empty, "alto.Text", Codec())
    # optional fields may be left out
    assert read_queries([], '{"text": "x"}', None, "alto.Query", Codec()) == [{"text": "x"}]


def test_a_retried_coordinator_lookup_is_not_logged_as_an_error() -> None:
    # Found by new users: every worker's log on a fresh broker began with
    # "ERROR ... Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError",
    # a lookup aiokafka retries (the broker was creating its offsets topic).
    from aiokafka.errors import GroupAuthorizationFailedError, GroupCoordinatorNotAvailableError

    stream = io.StringIO()
    root = logging.getLogger()
    before = list(root.handlers)
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    try:
        logs.configure(logging.INFO, "text", stream=stream)
        coordinator.error(
            "Group Coordinator Request failed: %s", GroupCoordinatorNotAvailableError()
        )
        coordinator.error("Group Coordinator Request failed: %s", GroupAuthorizationFailedError())
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)
    retried, denied = stream.getvalue().splitlines()
    assert " INFO " in retried and "retrying" in retried and "NotAvailable" in retried
    assert " ERROR " in denied and "Authorization" in denied


def test_a_topic_not_yet_in_metadata_is_not_logged_as_an_error() -> None:
    # Found by a new user: 2 of 9 fresh `up` runs opened with "ERROR aiokafka.cluster:
    # Topic X.input not found in cluster metadata", a second after creating it.
    stream = io.StringIO()
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        logs.configure(logging.INFO, "text", stream=stream)
        logging.getLogger("aiokafka.cluster").error(
            "Topic %s not found in cluster metadata", "app.input"
        )
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)
    (line,) = stream.getvalue().splitlines()
    assert " INFO " in line and "app.input not found in cluster metadata (yet: retrying)" in line


def test_a_heartbeat_that_meets_a_rebalance_is_not_logged_as_a_warning() -> None:
    # Found by a new user: every scale-up/down logged ~40 "WARNING aiokafka...: Heartbeat
    # failed for group X because it is rebalancing", how a member learns of a rebalance.
    stream = io.StringIO()
    root = logging.getLogger()
    before = list(root.handlers)
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    try:
        logs.configure(logging.INFO, "text", stream=stream)
        coordinator.warning("Heartbeat failed for group %s because it is rebalancing", "a.s")
        coordinator.warning("Heartbeat failed for group %s: coordinator (node %s) ...", "a.s", 1)
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)
    rebalance, other = stream.getvalue().splitlines()
    assert " INFO " in rebalance and "group a.s because it is rebalancing (members" in rebalance
    assert " WARNING " in other


def test_log_format_is_checked_and_exported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(logs.FORMAT_ENV, raising=False)
    monkeypatch.delenv(logs.LEVEL_ENV, raising=False)
    root = logging.getLogger()
    before = list(root.handlers)
    monkeypatch.setattr(
        logging.getLogger("alto_stream"), "level", logging.getLogger("alto_stream").level
    )
    try:
        assert logs.configure(logging.INFO, "json") == "json"
        assert os.environ[logs.FORMAT_ENV] == "json"  # the workers `up` starts inherit it
        # ... and the level: before, `alto-stream -v up` left its workers at INFO.
        logs.configure(logging.DEBUG, "text")
        assert os.environ[logs.LEVEL_ENV] == "DEBUG"
        assert logs.inherited_level() == logging.DEBUG
        monkeypatch.setenv(logs.LEVEL_ENV, "loud")
        assert logs.inherited_level() == logging.INFO
        with pytest.raises(ConfigError, match="bad log format 'xml'"):
            logs.configure(logging.INFO, "xml")
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)


def test_aiokafkas_repeated_lines_show_once_per_window_with_a_count() -> None:
    # Found by a new user killing a broker: ~1,300 aiokafka ERROR lines per worker
    # ("Unable connect to node with id 1 ...") in the ~10 s before it was fenced.
    repeats = logs.RepeatFilter(window=10.0)

    def record(name: str, at: float, node: int) -> logging.LogRecord:
        made = logging.LogRecord(
            name, logging.ERROR, __file__, 1, "Unable connect to node with id %s", (node,), None
        )
        made.created = at
        return made

    kept = [
        r
        for r in (record("aiokafka.client", 100 + i / 40, i % 3) for i in range(400))
        if repeats.filter(r)
    ]
    assert len(kept) == 1
    later = record("aiokafka.client", 111.0, 1)
    assert repeats.filter(later)
    assert later.getMessage() == (
        "Unable connect to node with id 1 (and 399 more like it from 00:01:40Z to 00:01:49Z)"
    )
    assert repeats.filter(record("alto_stream.runtime", 111.0, 1))  # ours: never dropped
    assert repeats.filter(record("alto_stream.runtime", 111.1, 1))
