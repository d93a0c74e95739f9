"""An ``EOFError`` inside a command is a failure, not a Ctrl-D: never a bare ``Aborted.``.

click and typer print only ``Aborted.`` (exit 1) for an ``EOFError`` that reaches
them; a worker under ``up`` whose index had an empty ``vectors.npy`` (numpy
raises ``EOFError``) crash-looped with that as its only log line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alto_stream.cli import app as cli
from alto_stream.cli._help import EndOfDataError

np = pytest.importorskip("numpy", reason="numpy comes with the ml extra: pip install -e '.[ml]'")


def test_an_end_of_file_deep_inside_a_command_is_shown_as_a_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from alto_stream.cli import index_cmd

    def ends_early(*_: object) -> None:
        raise EOFError("No data left in file")

    monkeypatch.setattr(index_cmd, "_report", ends_early)
    result = CliRunner().invoke(cli, ["index", "info", "somewhere"])
    assert result.exit_code == 1
    assert "Aborted" not in result.output
    assert isinstance(result.exception, EndOfDataError)
    assert "No data left in file" in str(result.exception)
    assert isinstance(result.exception.__cause__, EOFError)


def test_an_index_with_an_empty_vectors_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    from alto_stream.components.index import build_index, load_corpus
    from alto_stream.components.index.store import forget

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"id": "a", "title": "A", "text": "Some words here."}) + "\n")

    class Ones:
        name, backend, dimension, device = "ones", "test", 4, "cpu"

        def load(self) -> None:
            return None

        def embed(self, texts: list[str]) -> np.ndarray:
            return np.full((len(texts), 4), 0.5, dtype=np.float32)

    build_index(load_corpus(corpus), tmp_path / "idx", embedder=Ones())  # type: ignore[arg-type]
    (tmp_path / "idx" / "vectors.npy").write_bytes(b"")
    forget()
    result = CliRunner().invoke(cli, ["index", "search", str(tmp_path / "idx"), "words"])
    assert result.exit_code == 2, result.output
    assert "Aborted" not in result.output
    assert "cannot read vectors.npy" in result.output and "fix: rebuild it" in result.output
