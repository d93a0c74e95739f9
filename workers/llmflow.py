"""Streaming generation: a question in, the answer's sentences flowing on as they are written.

``generate`` is a split whose children are sentences: each is emitted the
moment the token stream closes it (see :mod:`alto_stream.components.sentences`),
so a downstream stage can start on the first sentence while the model is still
writing the rest. ``answer`` reassembles them, and says which attempt of the
generation they came from (a generation re-run after a crash writes other
sentences: the aggregate never mixes two attempts).

The model comes from the environment (``ALTO_LLM_BACKEND``, ``ALTO_LLM_MODEL``,
``ALTO_LLM_URL``; default: Gemma 3 270M on llama.cpp). Gemma 3 270M is a base
model without a chat template, hence the completion-style, few-shot prompt.

Run it: ``alto-stream up workers.llmflow:app`` then
``alto-stream push workers.llmflow:app "Why is the sky blue?" --follow``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from alto_stream import App, Child
from alto_stream.components.llm import LLM, Sampling, shared_llm
from alto_stream.components.sentences import split_sentences
from workers.common import llm_in_flight

FEW_SHOT = "\n".join(
    [
        "Answer each question in a few plain sentences.",
        "",
        "Question: Why do cats purr?",
        "Answer: Cats purr when they are relaxed or content. Purring can also soothe them "
        "when they are hurt. The sound comes from fast twitches of the muscles in the larynx.",
        "",
        "Question: What is a volcano?",
        "Answer: A volcano is an opening in the Earth's crust. Molten rock, ash and gases "
        "escape through it. Many volcanoes form where tectonic plates meet.",
        "",
        "Question: {question}",
        "Answer:",
    ]
)
"""A completion-style prompt: the base model continues the pattern of the examples."""

SAMPLING = Sampling(max_tokens=120, temperature=0.8, top_p=0.95, stop=("\nQuestion:", "\n\n"))


def prompt(question: str) -> str:
    """The few-shot prompt for ``question``."""
    return FEW_SHOT.format(question=question.strip())


def build(
    name: str = "llmflow",
    *,
    llm: LLM | None = None,
    sampling: Sampling = SAMPLING,
    in_flight: int | None = None,
    max_tokens: int | None = None,
    seed: int | None = None,
) -> App:
    """The app under ``name``; ``llm`` defaults to this process's shared model (from env).

    ``max_tokens`` (for tests and benchmarks) allows longer answers: the
    generation then stops only at the next few-shot question, or at that many tokens;
    ``seed`` makes the sampling repeatable (benchmarks compare identical texts).
    """
    if max_tokens is not None or seed is not None:
        sampling = Sampling(
            max_tokens=max_tokens or sampling.max_tokens, stop=("\nQuestion:",), seed=seed
        )
    app = App(name, input_schema="alto.Text")
    in_flight = in_flight or llm_in_flight()
    # Loaded when a `generate` worker starts (no other stage or command loads it).
    model = llm or shared_llm(stages=["generate"], preload=True, app=name)

    # commit_early: in the transactional mode too, sentences go on as they are written.
    @app.split(source=app.input, schema="alto.Text", max_in_flight=in_flight, commit_early=True)
    async def generate(query: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """One child per sentence of the generated answer, as soon as it is written."""
        async for sentence in split_sentences(model.stream(prompt(query["text"]), sampling)):
            yield {"text": sentence}

    @app.aggregate(source=generate, closes=generate, schema="alto.Json")
    async def answer(children: list[Child]) -> dict[str, Any]:
        """The sentences back together, with the attempt(s) they came from."""
        attempts = sorted({c.ancestry.path[-1].attempt for c in children})
        text = " ".join(c.value["text"] for c in children if c.ok)
        return {
            "json": json.dumps({"text": text, "attempts": attempts, "sentences": len(children)})
        }

    return app


app = build()
