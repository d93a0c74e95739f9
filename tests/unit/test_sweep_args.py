"""``python -m benchmarks.sweep``: bad arguments are one line and exit status 2, at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import sweep


@pytest.fixture(autouse=True)
def _an_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An index directory with a manifest (only its presence is checked up front)."""
    index = tmp_path / "index"
    index.mkdir()
    (index / "manifest.json").write_text("{}")
    monkeypatch.setenv("ALTO_INDEX_DIR", str(index))
    return index


def _refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        sweep.main(list(argv))
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--apps", "nosuch"], "no app 'nosuch'; the apps are"),
        (["--systems", "alto,bogus"], "bad system 'bogus'"),
        (["--loads", "0"], "every load must be > 0"),
        (["--loads", "0.5,x"], "bad --loads"),
        (["--queries", "0"], "bad --queries 0"),
        (["--low-queries", "0"], "bad --low-queries 0"),
        (["--engine-capacity", "0"], "bad --engine-capacity 0"),
        (["--engine-token-rate", "0"], "bad --engine-token-rate 0"),
        (["--engine-slowdown", "-1"], "bad --engine-slowdown -1"),
        (["--cdf-load", "0.7"], "--cdf-load 0.7 is not among the loads (0.5,0.9,1.2)"),
        (["--replicas", "rag:nostage=2"], "no stage 'nostage' in rag; the stages are"),
        (["--replicas", "cove:score=2"], "'cove' is not among --apps"),
        (["--admission", "fanout=0"], "bad --admission"),
    ],
)
def test_a_bad_sweep_argument_is_refused_before_anything_runs(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    args: list[str],
    says: str,
) -> None:
    monkeypatch.setattr(sweep, "sweep", _must_not_run)
    base = ["--apps", "rag", "--out", str(tmp_path / "out")]
    assert says in _refused(capsys, *base, *args)


def test_a_missing_index_is_refused_at_once(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sweep, "sweep", _must_not_run)
    monkeypatch.setenv("ALTO_INDEX_DIR", str(tmp_path / "none"))
    line = _refused(capsys, "--apps", "rag", "--out", str(tmp_path / "out"))
    assert "does not exist" in line and "alto-stream index build" in line


def test_merge_of_a_folder_that_holds_no_sweep_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    line = _refused(capsys, "--merge", str(tmp_path), "--out", str(tmp_path / "out"))
    assert "no sweep.json there" in line


def test_out_must_be_given_so_the_committed_results_are_not_overwritten(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweep, "sweep", _must_not_run)
    with pytest.raises(SystemExit) as exit_:
        sweep.main(["--apps", "rag"])
    assert exit_.value.code == 2
    assert "--out" in capsys.readouterr().err


def _must_not_run(*args: object, **kwargs: object) -> None:
    raise AssertionError("the sweep ran")
