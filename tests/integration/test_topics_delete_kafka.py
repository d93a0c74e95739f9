"""``alto-stream topics delete APP``: refused while the app's workers run, then every topic goes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alto_stream.cli import app as cli
from alto_stream.testing import unique_name

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]


def _textflow_module(tmp_path: Path, prefix: str) -> tuple[str, str]:
    """A module in ``tmp_path`` holding textflow under a unique name: (name, its app ref)."""
    name = unique_name(prefix)
    module = "m_" + name.replace("-", "_")
    (tmp_path / f"{module}.py").write_text(
        f"from workers.textflow import build\napp = build({name!r})\n"
    )
    return name, f"{module}:app"


def _cli_in_process(env: dict[str, str]) -> Callable[..., tuple[int, str]]:
    """Runs the CLI in this process with ``env``: (exit status, stdout + stderr)."""
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(cli, list(args), env=env)
        return result.exit_code, result.stdout + result.stderr

    return run


def test_delete_refuses_while_workers_run_then_removes_every_topic(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    name, ref = _textflow_module(tmp_path, "deltopics")
    env = {"ALTO_BOOTSTRAP_SERVERS": kafka_bootstrap}
    run = _cli_in_process(env)
    sys.path.insert(0, str(tmp_path))
    try:
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
    name, ref = _textflow_module(tmp_path, "delforce")
    env = {"ALTO_BOOTSTRAP_SERVERS": kafka_bootstrap}
    run = _cli_in_process(env)
    sys.path.insert(0, str(tmp_path))
    log = tmp_path / "worker.log"
    try:
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


def test_topics_a_removed_stage_left_are_named_and_deleted_with_the_app(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # Found by a new user: a removed stage's topics (4 records nobody read, 535 dead
    # letters) stayed on, unmentioned, and `topics delete` did not see them.
    name = unique_name("leftover")
    (tmp_path / "left_app.py").write_text(
        "import os\n"
        "from alto_stream import App\n"
        f"app = App({name!r}, input_schema='alto.Text')\n"
        "@app.map(source=app.input, schema='alto.Text')\n"
        "def first(t): return t\n"
        "if os.environ.get('WITH_SECOND'):\n"
        "    @app.map(source=first, schema='alto.Text')\n"
        "    def second(t): return t\n"
    )
    env = {
        **os.environ,
        "ALTO_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
    }

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "alto_stream.cli", *args],
            env={**env, **extra},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=90,
        )

    first = cli("topics", "apply", "left_app:app", WITH_SECOND="1")
    assert first.returncode == 0 and "none of its stages uses" not in first.stderr
    later = cli("topics", "apply", "left_app:app")  # `second` removed
    assert later.returncode == 0, later.stderr
    said = " ".join(later.stderr.split())
    assert f"2 topic(s) of app {name} that none of its stages uses now" in said
    assert f"{name}.second, {name}.second.dlq" in said and "topics delete left_app:app" in said
    gone = cli("topics", "delete", "left_app:app", "--yes")
    assert gone.returncode == 0, gone.stderr
    assert f"deleted {name}.second (used by none of its stages now" in gone.stdout
    assert f"deleted {name}.first\n" in gone.stdout
