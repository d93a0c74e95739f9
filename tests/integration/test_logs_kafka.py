"""Worker processes on a real broker log time, app, stage, replica and pid on every line.

In both formats (text for people, JSON for machines); an aggregate's worker logs
when a changelog restore starts and when it ends, with records and seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner
from word_app import APP

from alto_stream.cli import app as cli
from alto_stream.client import Client
from alto_stream.ops.loading import load_app
from alto_stream.runtime.kafka import KafkaTransport

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]

TEXT_LINE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (?P<level>[A-Z]+) "
    r"app=(?P<app>\S+) stage=(?P<stage>\S+) replica=(?P<replica>\S+) pid=(?P<pid>\d+) "
    r"(?P<logger>[\w.]+): (?P<message>.*)$"
)


def _parse(fmt: str, line: str) -> dict[str, Any]:
    if fmt == "json":
        data: dict[str, Any] = json.loads(line)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", data["time"]), line
        assert isinstance(data["ts"], float)
        return data
    match = TEXT_LINE.match(line)
    assert match, f"not a text log line: {line!r}"
    return {**match.groupdict(), "pid": int(match["pid"])}


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_worker_lines_carry_time_app_stage_replica_and_pid(
    fmt: str,
    kafka_bootstrap: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    unique_name: Callable[[str], str],
) -> None:
    name = unique_name("logs")
    module = "m_" + name.replace("-", "_")
    (tmp_path / f"{module}.py").write_text(APP.format(name=name))
    monkeypatch.syspath_prepend(str(tmp_path))
    ref = f"{module}:app"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "ALTO_BOOTSTRAP_SERVERS": kafka_bootstrap,
    }
    env.pop("ALTO_LOG_FORMAT", None)
    result = CliRunner().invoke(
        cli, ["topics", "apply", ref], env={"ALTO_BOOTSTRAP_SERVERS": kafka_bootstrap}
    )
    assert result.exit_code == 0, result.output
    # The text format is the default; JSON is asked for by the flag or by the variable.
    how = {"words": ["--log-format", fmt], "shout": [], "joined": []}
    if fmt == "json":
        env["ALTO_LOG_FORMAT"] = "json"
    replica = {"words": ["--replica-id", "7"], "shout": [], "joined": []}  # shout: by hand
    workers = {
        stage: subprocess.Popen(
            [sys.executable, "-m", "alto_stream.cli", *how[stage], "worker", ref, stage]
            + replica[stage],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for stage in ("words", "shout", "joined")
    }
    try:

        async def query() -> dict[str, Any]:
            async with Client(load_app(ref), KafkaTransport(kafka_bootstrap)) as client:
                finals = await client.run([{"text": "every line counts"}], timeout=90)
            return {q: r.value for q, r in finals.items()}

        assert list(asyncio.run(query()).values()) == [{"text": "EVERY LINE COUNTS"}]
    finally:
        errs = {}
        for stage, process in workers.items():
            process.send_signal(signal.SIGTERM)
            errs[stage] = process.communicate(timeout=60)[1]
    for stage, process in workers.items():
        assert process.returncode == 0, errs[stage]
        lines = [_parse(fmt, line) for line in errs[stage].splitlines() if line.strip()]
        assert lines, f"{stage} logged nothing"
        for line in lines:
            assert (line["app"], line["stage"], line["pid"]) == (name, stage, process.pid), line
        expected = {"words": "7", "shout": f"pid{process.pid}", "joined": f"pid{process.pid}"}
        assert {line["replica"] for line in lines} == {expected[stage]}
        messages = [line["message"] for line in lines]
        me = f"worker {expected[stage]}"
        assert any(m.startswith(f"{me} started: stage {stage}") for m in messages), messages
        assert any(m.startswith(f"{me} stopped (consumed=") for m in messages), messages
    restore = [_parse(fmt, line)["message"] for line in errs["joined"].splitlines()]
    changelog = f"{name}.joined.changelog"
    assert any(m.startswith(f"restoring {changelog}[") for m in restore), restore
    assert any(
        re.match(rf"restored {re.escape(changelog)}\[\d+\]: \d+ records read, .* in [\d.]+ s$", m)
        for m in restore
    ), restore
