"""``python -m benchmarks.engine``: settings it cannot serve with are refused; the port is real."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from benchmarks.engine import EngineConfig
from benchmarks.engine.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--capacity", "0"], "--capacity: capacity must be >= 1, got 0"),
        (["--capacity", "-1"], "--capacity: capacity must be >= 1, got -1"),
        (["--token-rate", "0"], "--token-rate: token_rate must be > 0"),
        (["--slowdown", "-1"], "--slowdown: slowdown must be >= 0"),
        (["--max-tokens", "0"], "--max-tokens: default_max_tokens must be >= 1"),
    ],
)
def test_a_setting_no_engine_has_is_bad_usage(
    capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err


def test_the_config_refuses_them_too() -> None:
    with pytest.raises(ValueError, match="capacity"):
        EngineConfig(capacity=0)
    EngineConfig(slowdown=0.0, first_token=0.0)  # both mean something


def test_port_0_says_the_port_it_listens_on() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    engine = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.engine", "--port", "0"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert engine.stderr is not None
        line = engine.stderr.readline()
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/v1", line).group(1))  # type: ignore[union-attr]
        assert port != 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=10) as reply:
            assert reply.status == 200
    finally:
        engine.terminate()
        engine.wait(10)
