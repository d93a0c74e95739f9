"""Parsers of the AI apps: what a small base model writes, read robustly or refused clearly."""

from __future__ import annotations

import pytest

from workers import prompts
from workers.parsing import (
    ParseError,
    parse_answer,
    parse_claims,
    parse_queries,
    parse_questions,
    parse_verdict,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            " Paris is the capital of France.\n- Paris has 2 million people.",
            ["Paris is the capital of France.", "Paris has 2 million people."],
        ),
        ("1. The sky is blue\n2) Water is wet.", ["The sky is blue.", "Water is wet."]),
        ("- None", []),
        (" None", []),
        (  # runs on into the next few-shot example: cut there
            " The Nile is long.\n\n###\n\nSentence: x\nClaims:\n- Other claim here.",
            ["The Nile is long."],
        ),
        (  # duplicates and fragments dropped, at most three
            "- A is B.\n- A is B.\n- ok\n- C is D.\n- E is F.\n- G is H.",
            ["A is B.", "C is D.", "E is F."],
        ),
        (" Sentence: Cats purr.\nClaims: - Cats purr.\n- Dogs bark loudly.", None),
    ],
)
def test_claims(raw: str, expected: list[str] | None) -> None:
    if expected is None:
        with pytest.raises(ParseError):
            parse_claims(raw)
    else:
        assert parse_claims(raw) == expected


@pytest.mark.parametrize("raw", ["", "   \n\n", "- ok\n- x", "Claim: nothing"])
def test_claims_refused_with_the_raw_text(raw: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_claims(raw)
    assert caught.value.raw == raw
    assert "could not parse claims" in str(caught.value)


def test_queries() -> None:
    assert parse_queries(" Eiffel Tower height?\n- Eiffel Tower history\n- third one") == [
        "Eiffel Tower height",
        "Eiffel Tower history",
    ]
    with pytest.raises(ParseError):
        parse_queries("\n\n")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            " When was Lennon born?\n- When was McCartney born?",
            ["When was Lennon born?", "When was McCartney born?"],
        ),
        ("1. Who wrote Hamlet\n2. The play is old.", ["Who wrote Hamlet?"]),
        (
            "- Is it?\n- Was it?\n- Did it?\n- Does it?\n- Where is it?",
            ["Is it?", "Was it?", "Did it?", "Does it?"],
        ),
    ],
)
def test_questions(raw: str, expected: list[str]) -> None:
    assert parse_questions(raw) == expected


def test_questions_refused() -> None:
    with pytest.raises(ParseError, match="questions"):
        parse_questions("The Beatles were a band.\nThey sang songs.")


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        (" True. The evidence says 1889.", "supported"),
        (" False. She was born in Warsaw.", "refuted"),
        (" Not enough info. Nothing about length.", "not enough info"),
        (" It is not true that she was born there", "refuted"),
        (" supported", "supported"),
        (" Incorrect, it is 300 m.", "refuted"),
        (" Yes.", "supported"),
    ],
)
def test_verdict(raw: str, label: str) -> None:
    assert parse_verdict(raw).label == label


def test_verdict_reason_and_refusal() -> None:
    assert parse_verdict(" False. She was born in Warsaw.").reason == "She was born in Warsaw."
    assert parse_verdict(" Not enough info. No date.").reason == "No date."
    with pytest.raises(ParseError, match="a verdict"):
        parse_verdict(" The Eiffel Tower is in Paris.")


def test_answer() -> None:
    assert parse_answer(" 9 October 1940\nQuestion: more") == "9 October 1940"
    assert parse_answer("Answer: Madrid") == "Madrid"
    with pytest.raises(ParseError, match="an answer"):
        parse_answer("\n")
    with pytest.raises(ParseError):
        parse_answer("Question: who?")


def test_long_raw_text_is_shortened_in_the_message_but_kept_whole() -> None:
    raw = "x" * 2000
    error = ParseError("claims", raw)
    assert len(str(error)) < 600 and error.raw == raw


def test_prompts_end_with_the_label_to_continue() -> None:
    assert prompts.claims_prompt("A is B.").endswith("Sentence: A is B.\nClaims:\n-")
    assert prompts.verdict_prompt("A is B.", ["A is B, says X."]).endswith(
        "Claim: A is B.\nVerdict:"
    )
    assert prompts.decompose_prompt("Q?").endswith("Sub-questions:\n-")
    assert prompts.plan_prompt("Q?", "B.").endswith("Verification questions:\n-")
    assert prompts.short_answer_prompt("Q?", []).endswith("(none found)\nQuestion: Q?\nAnswer:")
    assert "Revised:" in prompts.revise_prompt("Q?", "B.", [("q?", "a")])
    # No example's answer leaks into the next: examples are separated.
    assert prompts.answer_prompt("Q?").count("###") == 2
