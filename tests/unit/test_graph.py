"""`alto-stream graph`: an app's topology drawn as text, Mermaid or Graphviz."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from alto_stream.cli import app as cli
from alto_stream.errors import ConfigError
from alto_stream.ops.graph import render
from workers import textflow

TOPOLOGY = textflow.app.topology()


def test_text_lists_every_stage_with_its_topics_and_level() -> None:
    lines = render(TOPOLOGY, "text").splitlines()
    assert lines[0] == "app textflow"
    assert lines[1] == "input  [alto.Text]  -> textflow.input"
    by_stage = {line.strip().split(":")[0]: line for line in lines[2:]}
    assert list(by_stage) == list(TOPOLOGY.stages)
    assert "split depth 2->3  [textflow.sentences -> textflow.words]" in by_stage["words"]
    assert "map depth 3  [textflow.words -> textflow.shout]" in by_stage["shout"]
    assert "aggregate closes words, depth 3->2" in by_stage["sentence_text"]
    assert by_stage["document"].endswith("(output)")
    # Indentation follows the depth of the records a stage writes.
    assert by_stage["words"].index("words") > by_stage["sentences"].index("sentences")
    assert by_stage["document"].index("document") < by_stage["paragraph_text"].index("paragraph")


def test_mermaid_has_a_node_per_stage_an_edge_per_topic_and_closing_links() -> None:
    text = render(TOPOLOGY, "mermaid")
    assert text.startswith("flowchart TD\n")
    edges = re.findall(r"(\w+) -->\|([\w.]+)\| (\w+)", text)
    assert len(edges) == len(TOPOLOGY.stages)
    assert ("n_words", "textflow.words", "n_shout") in edges
    closes = set(re.findall(r"(\w+) -\.closes\.-> (\w+)", text))
    assert closes == {
        ("n_sentence_text", "n_words"),
        ("n_paragraph_text", "n_sentences"),
        ("n_document", "n_paragraphs"),
    }
    assert 'out_n_document(["textflow.document"])' in text


def test_dot_is_a_digraph_with_shapes_by_kind() -> None:
    text = render(TOPOLOGY, "dot")
    assert text.startswith('digraph "textflow" {') and text.endswith("}")
    assert '"words" [shape=trapezium' in text
    assert '"document" [shape=invtrapezium' in text
    assert '"shout" [shape=box,' in text
    assert '"sentence_text" -> "words" [style=dotted' in text
    assert text.count("{") == text.count("}")


def test_batch_stages_show_their_bounds() -> None:
    from workers import rag

    text = render(rag.app.topology(), "text")
    assert "score: batch of 16 (wait 0.05 s), depth 1" in text


def test_unknown_format_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="choose one of text, mermaid, dot"):
        render(TOPOLOGY, "png")


def test_the_command_prints_the_drawing() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["graph", "workers.textflow:app", "--format", "mermaid"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == render(TOPOLOGY, "mermaid")
    bad = runner.invoke(cli, ["graph", "workers.nothing:app"])
    assert bad.exit_code == 2
