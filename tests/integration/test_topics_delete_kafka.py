"""``alto-stream topics delete APP``: refused while the app's workers run, then every topic goes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alto_stream.cli import app as cli
from alto_stream.testing import unique_name

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]


def test_delete_refuses_while_workers_run_then_removes_every_topic(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    name = unique_name("deltopics")
    module = "m_" + name.replace("-", "_")
    (tmp_path / f"{module}.py").write_text(
        f"from workers.textflow import build\napp = build({name!r})\n"
    )
    ref = f"{module}:app"
    env = {"ALTO_BOOTSTRAP_SERVERS": kafka_bootstrap}
    runner = CliRunner()
    sys.path.insert(0, str(tmp_path))
    try:

        def run(*args: str) -> tuple[int, str]:
            result = runner.invoke(cli, list(args), env=env)
            return result.exit_code, result.stdout + result.stderr

        assert run("topics", "apply", ref)[0] == 0
        code, text = run("topics", "list", "--prefix", f"{name}.", "--json")
        created = {row["topic"] for row in json.loads(text)}
        assert len(created) > 10  # input, outputs, dead letters, changelogs
        worker = subprocess.Popen(
            [sys.executable, "-m", "alto_stream.cli", "worker", ref, "document"],
            env={
                **os.environ,
                **env,
                "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
            },
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 90
            while True:  # until the worker has joined its group
                code, text = run("topics", "delete", ref, "--dry-run")
                if "are running" in text or code != 0 or time.monotonic() > deadline:
                    break
                time.sleep(1.0)
            # A dry run lists what would go, and says the delete would be refused (it was
            # refused itself, listing nothing, before 2026-12-03).
            assert code == 0, text
            assert f"workers of app {name} are running" in text
            assert "would be refused without --force" in text
            assert text.count("would delete ") == len(created)
            code, text = run("topics", "delete", ref, "--yes")
            assert code == 2, text
            assert f"workers of app {name} are running" in text
            assert "document: 1 member" in text and "--force" in text
        finally:
            worker.terminate()
            worker.wait(timeout=30)

        code, text = run("topics", "delete", ref, "--dry-run", "--json")
        assert code == 0, text
        report = json.loads(text)
        assert set(report["found"]) == created and report["deleted"] == []
        assert run("topics", "list", "--prefix", f"{name}.", "--json")[1].count(name) == len(
            created
        )

        code, text = run("topics", "delete", ref)  # no terminal to ask on
        assert code == 2 and "fix: --yes" in text, text
        code, text = run("topics", "delete", ref, "--yes")
        assert code == 0, text
        assert {line.removeprefix("deleted ") for line in text.splitlines()} == created
        deadline = time.monotonic() + 30
        while json.loads(run("topics", "list", "--prefix", f"{name}.", "--json")[1]):
            assert time.monotonic() < deadline, "deleted topics still listed after 30 s"
            time.sleep(0.5)
        code, text = run("topics", "delete", ref, "--yes")
        assert code == 0 and f"app {name} has no topics on this cluster" in text
    finally:
        sys.path.remove(str(tmp_path))


def test_a_forced_delete_stops_the_running_workers_with_an_error(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Before 2026-12-03 a worker whose topics were deleted under it waited for ever, silently."""
    name = unique_name("delforce")
    module = "m_" + name.replace("-", "_")
    (tmp_path / f"{module}.py").write_text(
        f"from workers.textflow import build\napp = build({name!r})\n"
    )
    ref = f"{module}:app"
    env = {"ALTO_BOOTSTRAP_SERVERS": kafka_bootstrap}
    runner = CliRunner()
    sys.path.insert(0, str(tmp_path))
    log = tmp_path / "worker.log"
    try:

        def run(*args: str) -> tuple[int, str]:
            result = runner.invoke(cli, list(args), env=env)
            return result.exit_code, result.stdout + result.stderr

        assert run("topics", "apply", ref)[0] == 0
        with log.open("w") as stderr:
            worker = subprocess.Popen(
                [sys.executable, "-m", "alto_stream.cli", "worker", ref, "shout"],
                env={
                    **os.environ,
                    **env,
                    "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
                },
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        try:
            deadline = time.monotonic() + 90
            while "are running" not in run("topics", "delete", ref, "--dry-run")[1]:
                assert time.monotonic() < deadline, "the worker never joined its group"
                time.sleep(1.0)
            code, text = run("topics", "delete", ref, "--yes", "--force")
            assert code == 0, text
            assert "each stops with an error" in text
            gone = time.monotonic()
            assert worker.wait(timeout=90) == 2, log.read_text()
            took = time.monotonic() - gone
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=30)
        said = log.read_text()
        assert f"topic {name}.words, which group '{name}.shout' reads, was deleted" in said
        assert "topics apply" in said and "Traceback" not in said
        assert took < 60, f"the worker took {took:.0f} s to stop"
    finally:
        sys.path.remove(str(tmp_path))
