"""Scoring of `alto-stream eval`: recall of gold pages, loose accuracy, latency percentiles."""

from __future__ import annotations

import json

import pytest

from alto_stream.errors import ConfigError
from alto_stream.ops.evaluate import (
    EvalQuestion,
    Outcome,
    fanoutqa_questions,
    loose_accuracy,
    normalise,
    percentile,
    recall,
    summarise,
)


def test_normalise() -> None:
    text = "The Beatles' \u201cAbbey Road\u201d \u2013 1969!"
    assert normalise(text) == "beatles abbey road 1969"


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("Madrid", "Madrid", 1.0),
        ("It is madrid.", "Madrid", 1.0),
        ("Madridista", "Madrid", 0.0),  # whole words only
        ("Right, Left, Left", {"a": "Right", "b": "Left", "c": "Up"}, 2 / 3),
        ("about 2100000 people", 2100000.0, 1.0),
        ("", ["x"], 0.0),
        (None, "x", 0.0),
        ("anything", [], 0.0),
    ],
)
def test_loose_accuracy(prediction: str | None, reference: object, expected: float) -> None:
    assert loose_accuracy(prediction, reference) == pytest.approx(expected)


def test_recall_compares_titles_loosely() -> None:
    assert recall(["Pat_Burrell", "Other"], ["Pat Burrell", "Mark Mulder"]) == 0.5
    assert recall([], []) == 1.0


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) is None


def test_summary_counts_what_completed() -> None:
    q1 = EvalQuestion("1", "Which?", "Madrid", ("Madrid", "Paris"), ("a?",))
    q2 = EvalQuestion("2", "Who?", "Bob", ("Bob",), ())
    q3 = EvalQuestion("3", "When?", "1900", (), ())
    summary = summarise(
        [
            Outcome(q1, answer="Madrid", titles=("Madrid",), latency=2.0),
            Outcome(q2, answer=None, titles=("Bob",), latency=4.0, error="no answer"),
            Outcome(q3),  # timed out
        ],
        decomposition="llm",
    )
    assert summary.to_dict() == {
        "questions": 3,
        "completed": 2,
        "recall": 0.75,
        "accuracy": 0.5,
        "p50_s": 2.0,
        "p99_s": 4.0,
        "errors": 1,
        "decomposition": "llm",
    }


def test_query_carries_the_dataset_decomposition_on_request() -> None:
    q = EvalQuestion("7", "Q?", "A", (), ("a?", "b?"))
    assert q.query(dataset_decomposition=False) == {"text": "Q?", "metadata": {"id": "7"}}
    sent = q.query(dataset_decomposition=True)["metadata"]
    assert json.loads(sent["subquestions"]) == ["a?", "b?"]


def test_fanoutqa_dev_questions() -> None:
    pytest.importorskip("fanoutqa", reason="needs the ml extra")
    questions = fanoutqa_questions("dev", limit=3)
    assert len(questions) == 3
    assert all(q.question.endswith("?") and q.gold_titles and q.subquestions for q in questions)
    with pytest.raises(ConfigError, match="use --split dev"):
        fanoutqa_questions("test")
