"""With JSON logs, a command's last ``error:`` line is a JSON object too, and still read as such.

A new user's log shipper: with ``--log-format json`` every stderr line of a
worker was JSON but the last, ``error: cannot serve metrics on port ...``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from alto_stream.cli import _opsutil
from alto_stream.ops import supervisor
from alto_stream.ops.logs import FORMAT_ENV, error_line, error_of


def test_a_failing_command_says_its_error_in_json_when_logs_are_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(FORMAT_ENV, "json")
    with pytest.raises(typer.Exit):
        _opsutil.fail("cannot serve metrics on port 9400: in use", 2)
    (line,) = capsys.readouterr().err.splitlines()
    data = json.loads(line)
    assert data["level"] == "ERROR"
    assert data["message"] == "error: cannot serve metrics on port 9400: in use"
    assert error_of(line) == data["message"]
    monkeypatch.setenv(FORMAT_ENV, "text")
    assert error_line("x") is None
    with pytest.raises(typer.Exit):
        _opsutil.fail("plain", 2)
    assert capsys.readouterr().err.strip() == "error: plain"


def test_the_supervisor_reads_a_workers_reason_from_a_json_line(tmp_path: Path) -> None:
    log = tmp_path / "words-0.log"
    other = json.dumps({"level": "INFO", "message": "worker started"})
    line = json.dumps({"level": "ERROR", "message": "error: a write was not acknowledged"})
    log.write_text(f"{other}\n{line}\n")
    watch = supervisor._LogWatch(log, 0)
    watch.scan(now=1.0)
    assert watch.last_error == ("error: a write was not acknowledged", 1.0)
    assert error_of(other) is None and error_of("{not json 'error: x'") is None
