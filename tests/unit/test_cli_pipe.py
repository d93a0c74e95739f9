"""A closed standard output ends a command with 141, as a Unix tool killed by SIGPIPE;
and a connect time-out that is no time is refused.

Found by a new user scripting with `set -o pipefail`: `alto-stream tail ... | head -1`
(and `push --follow`, `trace`, `replay --print`, `broker status`) exited 1, the
status that says a command failed, with nothing on stderr.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from alto_stream.cli import CLOSED_PIPE_EXIT

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],  # click's echo: click meets EPIPE
        ["graph", "workers.textflow:app"],  # a rich console: rich meets it
    ],
)
def test_a_reader_gone_before_the_output_gives_141_and_no_traceback(args: list[str]) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "alto_stream.cli", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader goes before the command writes
    code = process.wait(timeout=60)
    err = process.stderr.read().decode()
    assert code == CLOSED_PIPE_EXIT == 141, err
    assert "Traceback" not in err


@pytest.mark.parametrize("raw", ["nan", "0", "-3", "abc"])
def test_a_connect_timeout_that_is_no_time_is_refused_in_one_line(
    raw: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by the same user: ALTO_CONNECT_TIMEOUT=nan gave a traceback; 0 and -3 became 0.1 s.
    from alto_stream.errors import ConfigError
    from alto_stream.ops.connect import connect_timeout

    monkeypatch.setenv("ALTO_CONNECT_TIMEOUT", raw)
    with pytest.raises(ConfigError, match="must be a number of seconds above 0"):
        connect_timeout()
    monkeypatch.setenv("ALTO_CONNECT_TIMEOUT", "0.05")
    assert connect_timeout() == 0.1
