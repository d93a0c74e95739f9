"""The streaming sentence splitter: rules, streaming behaviour, chunking invariance."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alto_stream.components.sentences import (
    SentenceSplitter,
    sentences,
    sentences_of,
    split_sentences,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("One. Two! Three? Four", ["One.", "Two!", "Three?", "Four"]),
        ("Pi is 3.14159 here. Yes.", ["Pi is 3.14159 here.", "Yes."]),
        ("It cost $2.50. Cheap.", ["It cost $2.50.", "Cheap."]),
        (
            "Dr. Who met Mr. Smith. Then Prof. X left.",
            ["Dr. Who met Mr. Smith.", "Then Prof. X left."],
        ),
        ("Fruit, e.g. Apples, and more. Done.", ["Fruit, e.g. Apples, and more.", "Done."]),
        (
            "J. R. R. Tolkien wrote. George W. Bush spoke.",
            ["J. R. R. Tolkien wrote.", "George W. Bush spoke."],
        ),
        ('He said "Stop." Then left.', ['He said "Stop."', "Then left."]),
        ('"Stop!" he said. Ok.', ['"Stop!" he said.', "Ok."]),
        ("(This is it.) Next one.", ["(This is it.)", "Next one."]),
        ("Wait... what? Really?! Yes…", ["Wait... what?", "Really?!", "Yes…"]),
        ("Well... It works.", ["Well...", "It works."]),
        (
            "Steps:\n1. Mix it.\n2. Bake it.\n3) Eat",
            ["Steps:", "1. Mix it.", "2. Bake it.", "3) Eat"],
        ),
        ("Items\n- one\n* two\n• three", ["Items", "- one", "* two", "• three"]),
        ("# Title\nBody text here", ["# Title", "Body text here"]),
        ("A line that wraps\nonto the next. End.", ["A line that wraps\nonto the next.", "End."]),
        ("Para one\n\nPara two", ["Para one", "Para two"]),
        ("In 2020. 5 people came.", ["In 2020.", "5 people came."]),
        ("", []),
        ("   \n\n  ", []),
        ("no end at all", ["no end at all"]),
    ],
)
def test_rules(text: str, expected: list[str]) -> None:
    assert sentences(text) == expected


def test_each_sentence_comes_as_soon_as_its_end_is_seen() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("First one") == []
    assert splitter.feed(".") == []  # "First one." may still be "First one.5" or "... e.g"
    assert splitter.feed(" ") == []  # the next visible character decides
    assert splitter.feed("S") == ["First one."]
    assert splitter.feed("econd one. Third") == ["Second one."]
    assert splitter.flush() == ["Third"]
    assert splitter.flush() == []  # reusable after a flush


async def test_split_sentences_yields_before_the_stream_ends() -> None:
    gate = asyncio.Event()
    seen: list[str] = []

    async def deltas() -> AsyncIterator[str]:
        yield "Hello there. "
        yield "More"
        await gate.wait()  # the generation is still running
        yield " text."

    async def consume() -> None:
        async for sentence in split_sentences(deltas()):
            seen.append(sentence)

    task = asyncio.create_task(consume())
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.001)
    assert seen == ["Hello there."]  # emitted while the stream is blocked
    gate.set()
    await asyncio.wait_for(task, 5)
    assert seen == ["Hello there.", "More text."]


_ALPHABET = st.sampled_from(
    [*"abc XYZ.!?…\"')(\n-*•#123e.g,", " ", " ", "a", "b", "Dr.", "e.g.", "3.5", "\n\n", "1. "]
)
_TEXTS = st.lists(_ALPHABET, max_size=60).map("".join)


@settings(max_examples=600, deadline=None)
@given(text=_TEXTS, cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=12))
def test_any_chunking_gives_the_sentences_of_the_whole_text(text: str, cuts: list[int]) -> None:
    points = sorted({min(c, len(text)) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    assert "".join(pieces) == text
    assert sentences_of(pieces) == sentences(text)


@settings(max_examples=200, deadline=None)
@given(text=_TEXTS)
def test_one_character_at_a_time_and_nothing_lost(text: str) -> None:
    found = sentences_of(list(text))
    assert found == sentences(text)
    # Nothing lost: the sentences are the text's visible characters, in order.
    assert "".join("".join(s.split()) for s in found) == "".join(text.split())
