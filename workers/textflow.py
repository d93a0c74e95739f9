"""A three-level text app: document -> paragraphs -> sentences -> words, and back.

It exercises every stage kind and nested ancestry with real splits of unknown
size: words are counted and upper-cased per sentence (map + filter), each
sentence is reassembled from its words, each paragraph from its sentences and
the document from its paragraphs. :func:`reference` computes the same result
sequentially in plain Python, which tests compare against.

Run it: ``alto-stream up workers.textflow:app`` then
``alto-stream push workers.textflow:app "Hello there. Bye." --follow``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

from alto_stream import App, Child, Kind

_SENTENCE = re.compile(r"(?<=[.!?])\s+")

SAMPLES = (
    "Hello there. General Kenobi!\n\nYou are a bold one. Skip this word.",
    "",  # a zero-child split
    "One.",
    "A b c. D e f g. H.\n\nI j.\n\n\n\nK l m n o p.",  # blank paragraphs are dropped
    "skip skip. skip.",  # every word filtered out
)
"""Documents that exercise the edge cases (tests and demos compare them to :func:`reference`)."""


def build(
    name: str = "textflow",
    *,
    word_delay: float = 0.0,
    word_in_flight: int = 64,
    plain: bool = False,
) -> App:
    """Build the app under ``name`` (tests use unique names).

    ``word_delay`` (seconds per word) and ``word_in_flight`` slow ``shout`` down,
    so that tests can kill workers while queries are still in the pipeline.
    ``plain`` writes every stage as a plain ``def`` (run inline by workers).
    """
    app = App(name, input_schema="alto.Text")
    if plain:
        _register_plain(app)
        return app

    @app.split(source=app.input, schema="alto.Text")
    async def paragraphs(doc: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """One child per non-empty paragraph (blank-line separated)."""
        for block in _blocks(doc["text"]):
            yield {"text": block}

    @app.split(source=paragraphs, schema="alto.Text")
    async def sentences(paragraph: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """One child per sentence."""
        for sentence in _sentences(paragraph["text"]):
            yield {"text": sentence}

    @app.split(source=sentences, schema="alto.Text")
    async def words(sentence: dict[str, Any]) -> list[dict[str, Any]]:
        """One child per word (a list: the count rides on the last child)."""
        return [{"text": w} for w in sentence["text"].split()]

    @app.map(source=words, schema="alto.Text", max_in_flight=word_in_flight)
    async def shout(word: dict[str, Any]) -> dict[str, Any] | None:
        """Upper-case a word; drop the word "skip" (a filter: a skip marker flows on)."""
        if word_delay:
            await asyncio.sleep(word_delay)
        return _shout(word)

    @app.aggregate(source=shout, closes=words, schema="alto.Text")
    async def sentence_text(children: list[Child]) -> dict[str, Any]:
        """Rejoin a sentence's words."""
        return _joined(children, " ")

    @app.aggregate(source=sentence_text, closes=sentences, schema="alto.Text")
    async def paragraph_text(children: list[Child]) -> dict[str, Any]:
        """Rejoin a paragraph's sentences."""
        return _joined(children, " ")

    @app.aggregate(source=paragraph_text, closes=paragraphs, schema="alto.Text")
    async def document(children: list[Child]) -> dict[str, Any]:
        """Rejoin the document's paragraphs."""
        return _joined(children, "\n\n")

    return app


def _register_plain(app: App) -> None:
    """The same stages as plain functions and generators."""

    @app.split(source=app.input, schema="alto.Text")
    def paragraphs(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
        for block in _blocks(doc["text"]):
            yield {"text": block}

    @app.split(source=paragraphs, schema="alto.Text")
    def sentences(paragraph: dict[str, Any]) -> Iterator[dict[str, Any]]:
        for sentence in _sentences(paragraph["text"]):
            yield {"text": sentence}

    @app.split(source=sentences, schema="alto.Text")
    def words(sentence: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w} for w in sentence["text"].split()]

    @app.map(source=words, schema="alto.Text")
    def shout(word: dict[str, Any]) -> dict[str, Any] | None:
        return _shout(word)

    @app.aggregate(source=shout, closes=words, schema="alto.Text")
    def sentence_text(children: list[Child]) -> dict[str, Any]:
        return _joined(children, " ")

    @app.aggregate(source=sentence_text, closes=sentences, schema="alto.Text")
    def paragraph_text(children: list[Child]) -> dict[str, Any]:
        return _joined(children, " ")

    @app.aggregate(source=paragraph_text, closes=paragraphs, schema="alto.Text")
    def document(children: list[Child]) -> dict[str, Any]:
        return _joined(children, "\n\n")


def _blocks(text: str) -> list[str]:
    return [block.strip() for block in text.split("\n\n") if block.strip()]


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


def _shout(word: dict[str, Any]) -> dict[str, Any] | None:
    if word["text"].strip(".,!?").lower() == "skip":
        return None
    return {"text": word["text"].upper()}


def _joined(children: list[Child], separator: str) -> dict[str, Any]:
    """Rejoin the children's texts; a failed or timed-out part shows where it was, with why.

    A skipped word (the filter) leaves nothing; an ERROR or TIMEOUT marker
    becomes ``[error: REASON]`` or ``[timeout: REASON]`` in the text, so that a
    final never reads as whole when a part of it is missing.
    """
    parts = []
    for child in children:
        if child.ok:
            parts.append(child.value["text"])
        elif child.kind is not Kind.SKIP:
            parts.append(f"[{child.kind.value.lower()}: {child.reason or 'no reason given'}]")
    return {"text": separator.join(parts)}


app = build()


def reference(text: str) -> str:
    """The same computation, sequential and in memory."""
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        sents = []
        for sentence in _SENTENCE.split(block.strip()):
            if not sentence.strip():
                continue
            kept = [w.upper() for w in sentence.split() if w.strip(".,!?").lower() != "skip"]
            sents.append(" ".join(kept))
        out.append(" ".join(sents))
    return "\n\n".join(out)
