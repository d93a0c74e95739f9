"""Scripted components for measuring orchestration alone: a model, a retriever, an embedder.

The model answers each prompt by its last label (``Claims:``, ``Answer:``...)
with canned text that the apps' parsers read, after an optional delay per
label (an answer streams word by word, ``per_sentence`` seconds a sentence);
the retriever and the embedder compute small deterministic results. With no
delays they cost next to nothing, so that CPU time spent around them is the
orchestration's. Not for tests of the apps' quality: the real components are.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field

from alto_stream.components.llm import LLM, Prompt, Request, Sampling
from alto_stream.components.sentences import sentences

__all__ = ["SCRIPTS", "Delays", "ScriptedEmbedder", "ScriptedLLM", "ScriptedSearch"]


def _claims(prompt: str) -> str:
    return " None" if "Sentence: Hope" in prompt else " Paris is in France.\n- Paris is old."


# label -> the completion (a function of the prompt's last part), per app; first match wins.
SCRIPTS: dict[str, dict[str, object]] = {
    "factcheck": {
        "Claims:": _claims,
        "Queries:": " Paris location\n- Paris age",
        "Verdict:": " True. The evidence says so.",
        "Answer:": " Paris is the capital of France. It lies on the Seine. Hope this helps!",
    },
    "fanout": {
        "Sub-questions:": " When was Rome founded?\n- When was Paris founded?\n- Is Rome older?",
        "Facts:": " Rome",
        "Answer:": " 1900",
    },
    "rag": {"Answer:": " The Nile flows north. It is very long. It ends in Egypt."},
    "cove": {
        "Verification questions:": " What is the capital of Australia?\n- Is it big?",
        "Revised:": " The capital of Australia is Canberra.",
        "Answer:": " It is Sydney. It is big.",
    },
}


@dataclass(frozen=True)
class Delays:
    """Seconds each kind of call takes (label -> delay; ``per_sentence`` for streamed answers)."""

    llm: dict[str, float] = field(default_factory=dict)
    per_sentence: float = 0.0  # each sentence of an "Answer:" completion
    search: float = 0.0


class ScriptedLLM(LLM):
    """The canned completions of one app's :data:`SCRIPTS`, streamed word by word."""

    backend = "scripted"

    def __init__(self, app: str, delays: Delays | None = None) -> None:
        super().__init__()
        self.script = SCRIPTS[app]
        self.delays = delays or Delays()

    async def _load(self) -> None:
        """Nothing to load."""

    async def _release(self) -> None:
        """Nothing to release."""

    async def _generate(
        self, prompt: Prompt, sampling: Sampling, request: Request
    ) -> AsyncGenerator[str, None]:
        text = prompt if isinstance(prompt, str) else str(prompt[-1].get("content", ""))
        last = text.rsplit("\n###\n", 1)[-1]
        label = next(label for label in self.script if label in last)
        canned = self.script[label]
        out = canned(last) if callable(canned) else str(canned)
        if self.delays.llm.get(label):
            await asyncio.sleep(self.delays.llm[label])
        streamed = self.delays.per_sentence if label == "Answer:" else 0.0
        pieces = sentences(out) if streamed else [out]
        for i, piece in enumerate(pieces):
            words = re.findall(r"\s*\S+", (" " if i else "") + piece)
            for word in words:  # one delta per word, as tokens come, evenly over the sentence
                if streamed:
                    await asyncio.sleep(streamed / len(words))
                yield word


@dataclass(frozen=True)
class _Passage:
    title: str
    text: str
    score: float


class ScriptedSearch:
    """Passages titled after the query's capitalised words, after ``delay`` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    async def asearch(self, query: str, k: int | None = None) -> list[_Passage]:
        """The best ``k`` passages for ``query``."""
        if self.delay:
            await asyncio.sleep(self.delay)
        words = [w.strip("?.,") for w in query.split() if w[:1].isupper()] or ["Misc"]
        return [
            _Passage(w, f"{w} is a place. {w} was founded long ago. It is big.", 1.0 - i / 10)
            for i, w in enumerate(words[: k or 3])
        ]


class ScriptedEmbedder:
    """Letter-count unit vectors."""

    async def aembed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit vector per text."""
        rows = []
        for text in texts:
            row = [float(text.lower().count(c)) for c in "abcdefghijklmnopqrstuvwxyz"]
            norm = math.sqrt(sum(x * x for x in row)) or 1.0
            rows.append([x / norm for x in row])
        return rows
