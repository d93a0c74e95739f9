"""`index eval` without FanOutQA says so before it loads the index and the model.

Found by a new user without the ml extra: the index and MiniLM loaded first, then
the error about the missing package came.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from alto_stream.cli import app as cli
from alto_stream.components import index
from alto_stream.components.index import recall
from alto_stream.errors import ConfigError


def test_a_missing_fanoutqa_is_said_before_anything_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []

    class Retriever:
        def __init__(self, path: object) -> None:
            opened.append("created")

        def open(self) -> None:
            opened.append("opened")

    def no_fanoutqa() -> list[object]:
        raise ConfigError("FanOutQA is not installed; fix: pip install 'alto-stream[ml]'")

    monkeypatch.setattr(index, "Retriever", Retriever)
    monkeypatch.setattr(recall, "fanoutqa_questions", no_fanoutqa)
    result = CliRunner().invoke(cli, ["index", "eval", "/nowhere"])
    assert result.exit_code == 2, result.output
    assert "FanOutQA is not installed" in result.output
    assert opened == []
