"""docs/apps.md: its drawings are `alto-stream graph`'s output, its examples are runnable.

The first question of each app's example is what tests/e2e/test_ai_apps_e2e.py
runs through the app on a real broker with the real models.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from alto_stream.ops.graph import render
from alto_stream.ops.loading import load_app

DOC = Path(__file__).resolve().parents[2] / "docs" / "apps.md"
APPS = ["factcheck", "fanout", "rag", "cove"]


def section(name: str) -> str:
    """The text of the doc's ``## name`` section."""
    text = DOC.read_text()
    match = re.search(rf"^## {name}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"docs/apps.md has no section '## {name}'"
    return match.group(1)


def example_question(name: str) -> str:
    """The question of the section's ``alto-stream push workers.<name>:app "..."`` line."""
    for line in section(name).splitlines():
        words = shlex.split(line) if line.startswith("alto-stream push") else []
        if words[2:3] == [f"workers.{name}:app"]:
            return words[3]
    raise AssertionError(f"docs/apps.md section {name} has no push example")


@pytest.mark.parametrize("name", APPS)
def test_the_drawing_is_the_graph_commands_output(name: str) -> None:
    blocks = re.findall(r"```mermaid\n(.*?)\n```", section(name), re.DOTALL)
    topology = load_app(f"workers.{name}:app").topology()
    assert blocks == [render(topology, "mermaid")], "regenerate: alto-stream graph --format mermaid"


@pytest.mark.parametrize("name", APPS)
def test_each_app_has_a_push_example(name: str) -> None:
    question = example_question(name)
    assert question.endswith("?")
    assert f"alto-stream topics apply workers.{name}:app" in section(name)
