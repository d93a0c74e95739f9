"""Retrieval quality: recall@k of the gold Wikipedia page for FanOutQA dev sub-questions.

FanOutQA (``fanoutqa`` package, dev split) decomposes each multi-hop question
into sub-questions, each answered by a human from one Wikipedia page (its
``evidence``). A sub-question counts when its page is in the index's corpus
(titles compared case-insensitively, ``_`` as a space); it is a hit at k when
a passage of that page is among the k best passages retrieved for it.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from alto_stream.components.index.retriever import Retriever
from alto_stream.errors import ConfigError

__all__ = ["GoldQuestion", "RecallResult", "fanoutqa_questions", "recall_at"]


@dataclass(frozen=True)
class GoldQuestion:
    """A question and the title of the page that answers it."""

    id: str
    question: str
    title: str


@dataclass(frozen=True)
class RecallResult:
    """Recall at each k over the questions whose page is in the index."""

    questions: int
    """Sub-questions whose gold page is in the corpus (the denominator)."""
    skipped: int
    """Sub-questions whose gold page is not in the corpus."""
    recall: dict[int, float]
    seconds: float
    """Embedding and searching every question, one batch."""


def _norm(title: str) -> str:
    return " ".join(title.replace("_", " ").split()).casefold()


def fanoutqa_questions() -> list[GoldQuestion]:
    """Every FanOutQA dev sub-question that has an evidence page (nested ones included)."""
    try:
        fanoutqa = importlib.import_module("fanoutqa")
    except ImportError as exc:
        raise ConfigError(
            "recall needs the FanOutQA data set; fix: pip install 'alto-stream[ml]'"
        ) from exc

    def leaves(items: Sequence[Any]) -> Iterator[GoldQuestion]:
        for item in items:
            if item.evidence is not None:
                yield GoldQuestion(item.id, item.question, item.evidence.title)
            yield from leaves(item.decomposition)

    return [q for top in fanoutqa.load_dev() for q in leaves(top.decomposition)]


def recall_at(
    retriever: Retriever,
    questions: Sequence[GoldQuestion],
    ks: Sequence[int] = (1, 10),
) -> RecallResult:
    """recall@k for each k in ``ks`` (see the module docstring)."""
    index = retriever.open()
    titles = {_norm(str(row["title"])) for row in index.rows}
    kept = [q for q in questions if _norm(q.title) in titles]
    if not kept:
        raise ConfigError(
            f"none of the {len(questions)} questions has its page in index {retriever.path}"
        )
    began = time.perf_counter()
    found = retriever.search_many([q.question for q in kept], k=max(ks))
    seconds = time.perf_counter() - began
    ranks = []
    for question, passages in zip(kept, found, strict=True):
        gold = _norm(question.title)
        hit = [i for i, p in enumerate(passages) if _norm(p.title) == gold]
        ranks.append(hit[0] if hit else None)
    recall = {k: sum(1 for r in ranks if r is not None and r < k) / len(kept) for k in ks}
    return RecallResult(len(kept), len(questions) - len(kept), recall, seconds)
