"""Evaluate an app on a labelled set: FanOutQA for the fanout app (no I/O but the data set).

Scoring is plain and documented:

- **recall**: per question, the share of its gold Wikipedia pages (the
  dataset's necessary evidence) among the titles the app retrieved, compared
  case-insensitively with ``_`` as a space; averaged over completed questions.
- **accuracy**: FanOutQA's loose accuracy: per question, the share of the
  reference answer's leaf strings (a dict's values, a list's items, a
  number or a string) found in the normalised answer (lower case, no
  punctuation or articles, single spaces); averaged over completed questions,
  a missing answer scoring 0.
- **latency**: seconds from a query's push to its final result (p50, p99).

>>> normalise("The  Eiffel-Tower!")
'eiffel tower'
>>> loose_accuracy("It was Canberra, not Sydney.", {"capital": "Canberra"})
1.0
"""

from __future__ import annotations

import importlib
import json
import math
import re
import string
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from alto_stream.errors import ConfigError

__all__ = [
    "EvalQuestion",
    "Outcome",
    "Summary",
    "fanoutqa_questions",
    "loose_accuracy",
    "normalise",
    "percentile",
    "recall",
    "summarise",
]

# Typographic quotes and dashes count as punctuation too.
_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}\u2018\u2019\u201c\u201d\u2013\u2014]")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


def normalise(text: str) -> str:
    """Lower case, punctuation and articles removed, white space collapsed."""
    text = _PUNCTUATION.sub(" ", text.lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def _title(title: str) -> str:
    return " ".join(title.replace("_", " ").split()).casefold()


def _leaves(answer: Any) -> Iterator[str]:
    if isinstance(answer, dict):
        for value in answer.values():
            yield from _leaves(value)
    elif isinstance(answer, list | tuple):
        for value in answer:
            yield from _leaves(value)
    elif isinstance(answer, float) and answer.is_integer():
        yield str(int(answer))
    elif answer is not None:
        yield str(answer)


def loose_accuracy(prediction: str | None, reference: Any) -> float:
    """The share of the reference's leaf strings found in the normalised prediction."""
    leaves = [normalise(leaf) for leaf in _leaves(reference)]
    leaves = [leaf for leaf in leaves if leaf]
    if not leaves:
        return 0.0
    said = f" {normalise(prediction or '')} "
    return sum(f" {leaf} " in said for leaf in leaves) / len(leaves)


def recall(retrieved: Iterable[str], gold: Iterable[str]) -> float:
    """The share of ``gold`` titles among ``retrieved`` ones (1.0 when there is no gold)."""
    wanted = {_title(t) for t in gold}
    if not wanted:
        return 1.0
    return len(wanted & {_title(t) for t in retrieved}) / len(wanted)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100, nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class EvalQuestion:
    """A question with its reference answer, gold pages and the dataset's sub-questions."""

    id: str
    question: str
    answer: Any
    gold_titles: tuple[str, ...]
    subquestions: tuple[str, ...]

    def query(self, *, dataset_decomposition: bool) -> dict[str, Any]:
        """The ``alto.Query`` to push: the id, and the sub-questions when asked for."""
        metadata = {"id": self.id}
        if dataset_decomposition:
            metadata["subquestions"] = json.dumps(list(self.subquestions))
        return {"text": self.question, "metadata": metadata}


@dataclass(frozen=True)
class Outcome:
    """One question's result: its answer, retrieved titles and latency (None: not completed)."""

    question: EvalQuestion
    answer: str | None = None
    titles: tuple[str, ...] = ()
    latency: float | None = None
    error: str | None = None

    @property
    def completed(self) -> bool:
        """True when the query's final result came back (even with an error marker)."""
        return self.latency is not None


@dataclass(frozen=True)
class Summary:
    """The evaluation's figures (see the module docstring)."""

    questions: int
    completed: int
    recall: float | None
    accuracy: float | None
    p50_s: float | None
    p99_s: float | None
    errors: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary object."""
        rounded = {
            k: (round(v, 4) if isinstance(v, float) else v)
            for k, v in (
                ("questions", self.questions),
                ("completed", self.completed),
                ("recall", self.recall),
                ("accuracy", self.accuracy),
                ("p50_s", self.p50_s),
                ("p99_s", self.p99_s),
                ("errors", self.errors),
            )
        }
        return {**rounded, **self.extra}


def summarise(outcomes: Sequence[Outcome], **extra: Any) -> Summary:
    """Recall, accuracy and latency percentiles over ``outcomes``."""
    done = [o for o in outcomes if o.completed]
    latencies = [o.latency for o in done if o.latency is not None]

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    return Summary(
        questions=len(outcomes),
        completed=len(done),
        recall=mean([recall(o.titles, o.question.gold_titles) for o in done]),
        accuracy=mean([loose_accuracy(o.answer, o.question.answer) for o in done]),
        p50_s=percentile(latencies, 50),
        p99_s=percentile(latencies, 99),
        errors=sum(1 for o in done if o.error),
        extra=extra,
    )


def fanoutqa_questions(split: str = "dev", *, limit: int | None = None) -> list[EvalQuestion]:
    """FanOutQA's questions of ``split`` (``dev``: the one with answers), first ``limit``."""
    if split != "dev":
        raise ConfigError(f"FanOutQA split {split!r} has no public answers: use --split dev")
    try:
        fanoutqa = importlib.import_module("fanoutqa")
    except ImportError as exc:
        raise ConfigError(
            "the fanout evaluation needs the FanOutQA data set; fix: pip install 'alto-stream[ml]'"
        ) from exc
    questions = []
    for item in fanoutqa.load_dev()[:limit]:
        subs = tuple(d.question for d in item.decomposition)
        gold = tuple(e.title for e in item.necessary_evidence)
        questions.append(EvalQuestion(item.id, item.question, item.answer, gold, subs))
    return questions
