"""A field added (with a default) to a running app's schema: records in flight stay readable.

Found by a new user (2026-12-03): the app's schemas folder had no ``history/``
(the README's way of writing an app), so once the ``.avsc`` changed, every record
written with the old version had an unknown writer fingerprint: dead letters in
flight, and the aggregate stopped at its restore. Workers, ``push`` and ``topics
apply`` now keep a snapshot of each version as they start.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]

V1 = {
    "type": "record",
    "name": "Doc",
    "namespace": "sv",
    "fields": [{"name": "text", "type": "string"}],
}
V2 = {**V1, "fields": [*V1["fields"], {"name": "tag", "type": "string", "default": "none"}]}


def test_a_record_pushed_with_the_old_version_is_read_after_the_change(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    name = unique_name("versions")
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "sv.Doc.avsc").write_text(json.dumps(V1))
    (tmp_path / "sv_app.py").write_text(
        "from alto_stream import App\n"
        f"app = App({name!r}, input_schema='sv.Doc', schemas=['schemas'])\n"
        "@app.map(source=app.input, schema='sv.Doc')\n"
        "def echo(doc):\n"
        "    return {**doc, 'text': doc['text'].upper()}\n"
    )
    env = {
        **os.environ,
        "ALTO_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "alto_stream.cli", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=90,
        )

    assert cli("topics", "apply", "sv_app:app").returncode == 0
    pushed = cli("push", "sv_app:app", "--value", json.dumps({"text": "written with v1"}))
    assert pushed.returncode == 0, pushed.stderr
    assert len(list((schemas / "history").iterdir())) == 1  # v1's snapshot, kept by push
    (schemas / "sv.Doc.avsc").write_text(json.dumps(V2))  # the change, no archive() run

    worker = subprocess.Popen(
        [sys.executable, "-m", "alto_stream.cli", "worker", "sv_app:app", "echo"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            out = cli(
                "tail",
                f"{name}.echo",
                "--app",
                "sv_app:app",
                "--from-beginning",
                "--no-follow",
                "--json",
            )
            if out.stdout.strip() or time.monotonic() > deadline:
                break
            time.sleep(1.0)
    finally:
        worker.send_signal(signal.SIGTERM)
        said, _ = worker.communicate(timeout=60)
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["kind"] for r in records] == ["DATA"], (out.stdout, said[-3000:])
    assert records[0]["value"] == {"text": "WRITTEN WITH V1", "tag": "none"}
    dead = cli("tail", f"{name}.echo.dlq", "--from-beginning", "--no-follow", "--json")
    assert dead.stdout.strip() == "", dead.stdout
    assert len(list((schemas / "history").iterdir())) == 2  # the worker kept v2's too
