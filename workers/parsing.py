"""Robust parsers for a small base model's few-shot completions.

Gemma 3 270M continues a few-shot pattern, but not reliably: it may number its
lines or bullet them, repeat itself, run on into a new example, or write
nothing usable. Each parser here takes what it can and raises
:class:`ParseError` (with the raw text) when nothing usable is left: raised
from a stage handler, that becomes an error marker downstream and a
dead-letter record holding the raw output, so the query still completes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from alto_stream.errors import AltoError

__all__ = [
    "LABELS",
    "ParseError",
    "Verdict",
    "parse_answer",
    "parse_claims",
    "parse_list",
    "parse_queries",
    "parse_questions",
    "parse_verdict",
]

_MAX_RAW = 400


class ParseError(AltoError):
    """The model's output did not have the expected shape; ``raw`` is what it wrote."""

    def __init__(self, what: str, raw: str) -> None:
        shown = raw if len(raw) <= _MAX_RAW else raw[:_MAX_RAW] + "..."
        super().__init__(f"could not parse {what} from the model's output: {shown!r}")
        self.what = what
        self.raw = raw


# A list item: "- x", "* x", "• x", "1. x", "1) x", "Q1: x", "Claim 2: x".
_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.):]|[A-Za-z]+\s*\d+\s*[.):])\s*(?P<text>.+?)\s*$")
# Where a completion runs on into the next few-shot example.
_RUN_ON = re.compile(
    r"^\s*(?:Question|Sentence|Claim|Answer|Evidence|Context|Baseline|Passage|Verdict|###)"
    r"\s*[^:\n]{0,20}:",
    re.IGNORECASE,
)
_NONE = re.compile(r"^\s*[-*]?\s*(?:none|no claims?|nothing|n/?a)\s*\.?\s*$", re.IGNORECASE)


def _cut_run_on(raw: str) -> list[str]:
    """The lines before the model started a new example or a blank line after content."""
    lines: list[str] = []
    for line in raw.strip().splitlines():
        if _RUN_ON.match(line):
            break
        if not line.strip():
            if lines:
                break
            continue
        lines.append(line.strip())
    return lines


def parse_list(
    raw: str,
    what: str,
    *,
    limit: int,
    min_words: int = 2,
    allow_none: bool = False,
) -> list[str]:
    """The items of a bulleted or numbered (or one-per-line) list, deduplicated, in order.

    At most ``limit`` items; items shorter than ``min_words`` words are dropped.
    With ``allow_none``, an explicit "None" gives an empty list. :class:`ParseError`
    when nothing is left.
    """
    lines = _cut_run_on(raw)
    if allow_none and lines and _NONE.match(lines[0]):
        return []
    items: list[str] = []
    seen: set[str] = set()
    for line in lines:
        match = _ITEM.match(line)
        text = (match.group("text") if match else line).strip().strip('"').strip()
        key = re.sub(r"\W+", " ", text.lower()).strip()
        if len(text.split()) < min_words or key in seen:
            continue
        seen.add(key)
        items.append(text)
        if len(items) == limit:
            break
    if not items:
        raise ParseError(what, raw)
    return items


def parse_claims(raw: str, *, limit: int = 3) -> list[str]:
    """Atomic claims, one per line (an explicit "None": no claim in the sentence)."""
    claims = parse_list(raw, "claims", limit=limit, min_words=3, allow_none=True)
    return [c if c.endswith((".", "!", "?")) else c + "." for c in claims]


def parse_queries(raw: str, *, limit: int = 2) -> list[str]:
    """Search queries, one per line."""
    return [q.rstrip("?.").strip() for q in parse_list(raw, "search queries", limit=limit)]


def parse_questions(raw: str, *, limit: int = 4) -> list[str]:
    """Questions (sub-questions, verification questions), each ending with a question mark.

    Lines that are not questions are dropped (the model's asides); a question
    without its mark gets one.
    """
    found = parse_list(raw, "questions", limit=limit * 2, min_words=2)
    questions = [q for q in found if q.endswith("?")]
    if not questions:
        questions = [q.rstrip(".") + "?" for q in found if _looks_like_question(q)]
    if not questions:
        raise ParseError("questions", raw)
    return questions[:limit]


_QUESTION_WORDS = re.compile(
    r"^(?:who|what|when|where|which|why|how|is|are|was|were|did|does|do|in|of)\b", re.IGNORECASE
)


def _looks_like_question(text: str) -> bool:
    return bool(_QUESTION_WORDS.match(text))


def parse_answer(raw: str, what: str = "an answer") -> str:
    """The first non-empty line (a short answer), without a leading label."""
    unlabelled = re.sub(r"^\s*(?:answer|revised|a)\s*:[ \t]*", "", raw, flags=re.IGNORECASE)
    lines = _cut_run_on(unlabelled)
    if not lines:
        raise ParseError(what, raw)
    text = lines[0].strip()
    if not text:
        raise ParseError(what, raw)
    return text


LABELS = ("supported", "refuted", "not enough info")
"""Verdict labels, as reports and scores use them."""

_SUPPORTED = re.compile(r"\b(?:true|supported|supports|correct|yes|right|accurate)\b", re.I)
_REFUTED = re.compile(r"\b(?:false|refuted|refutes|incorrect|no|wrong|inaccurate|not true)\b", re.I)
_UNKNOWN = re.compile(
    r"\b(?:not enough(?: info(?:rmation)?)?|unknown|unclear|cannot|can't|unverifiable)\b", re.I
)


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict: one of :data:`LABELS`, and the model's reason (may be empty)."""

    label: str
    reason: str

    @property
    def supported(self) -> bool:
        """True when the evidence supports the claim."""
        return self.label == "supported"


def parse_verdict(raw: str) -> Verdict:
    """A verdict from "True/False/Not enough info" (or a synonym) at the start of the output.

    The earliest label word wins ("False. It is not true that ..." is refuted);
    :class:`ParseError` when there is none.
    """
    lines = _cut_run_on(raw)
    text = " ".join(lines)
    hits = [
        (m.start(), m.end(), label)
        for pattern, label in (
            (_UNKNOWN, "not enough info"),
            (_REFUTED, "refuted"),
            (_SUPPORTED, "supported"),
        )
        if (m := pattern.search(text))
    ]
    if not hits:
        raise ParseError("a verdict", raw)
    _, end, label = min(hits)
    return Verdict(label, text[end:].lstrip(" .,:;!-").strip())
