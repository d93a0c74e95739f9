"""A worker whose stage declared an LLM checks its backend at start: one clear line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, bootstrap: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ALTO_BOOTSTRAP_SERVERS": bootstrap,
        "ALTO_LLM_MODEL": "google/gemma-3-270m",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "alto_stream.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_vllm_worker_without_vllm_or_gpu_fails_at_start_with_one_line(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    ref = f"workers.llmflow:build({unique_name('llm-start')!r})"
    applied = _cli("-q", "topics", "apply", ref, bootstrap=kafka_bootstrap, timeout=60)
    assert applied.returncode == 0, applied.stderr
    args = ("worker", ref, "generate", "--llm", "vllm")
    started = _cli(*args, bootstrap=kafka_bootstrap, timeout=90)
    assert started.returncode == 2
    lines = [line for line in started.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, started.stderr  # no import trace
    assert lines[0].startswith("error: the vllm backend needs")
    assert "Traceback" not in started.stdout + started.stderr
    # A stage that did not declare the model starts regardless (stopped by its timeout).
    with pytest.raises(subprocess.TimeoutExpired):
        _cli("worker", ref, "answer", "--llm", "vllm", bootstrap=kafka_bootstrap, timeout=15)
