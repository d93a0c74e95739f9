"""A streaming sentence splitter: text deltas in, each sentence out the moment its end is seen.

An LLM streams text in arbitrary pieces (tokens, often parts of words). The
splitter keeps the text of the sentence being written and decides about each
possible end (``.``, ``!``, ``?``, ``…``, a newline) as soon as the characters
that decide it have arrived: the terminator run, closing quotes and brackets,
the whitespace after them, and the next visible character. It never waits for
more than that, and never for the end of the generation.

Because every decision depends only on the sentence's own text and that short
look-ahead, the sentences do not depend on how the text was cut into deltas:
feeding any chunking of a text gives the same sentences as the whole text (a
hypothesis property test pins this down).

What counts as an end:

- a terminator run (``.``, ``!``, ``?``, ``…``, ``...``, ``?!``) with its closing quotes
  and brackets, followed by whitespace and then anything but a lowercase letter
  (``"Stop!" he said.`` is one sentence);
- not after a known abbreviation (``Dr.``, ``e.g.``, ``Fig.``...), a single
  capital initial (``J. R. R. Tolkien``) or a list number (``1. Apples``);
- not inside a number (``3.14``: no whitespace follows the dot);
- a blank line always; a single newline when the line ending or the next line is
  a list item (``-``, ``*``, ``•``, ``1.``, ``2)``) or a heading (``#``), so that list
  items are sentences while soft-wrapped prose is not cut.

>>> sentences('Dr. Smith paid $3.50. "Why?" he asked. J. R. R. Tolkien wrote it.')
['Dr. Smith paid $3.50.', '"Why?" he asked.', 'J. R. R. Tolkien wrote it.']
>>> sentences("Shopping:\\n- apples\\n- pears\\n\\nDone")
['Shopping:', '- apples', '- pears', 'Done']
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable

__all__ = ["ABBREVIATIONS", "SentenceSplitter", "sentences", "split_sentences"]

_ABBREVIATED = """
    mr mrs ms dr prof sr jr st mt rev gen col lt sgt capt gov sen rep hon
    vs etc al cf fig figs eq no nos vol vols ch sec p pp ed eds approx est dept univ
    inc ltd co corp bros jan feb mar apr jun jul aug sep sept oct nov dec
    e.g i.e a.m p.m u.s u.k
"""
ABBREVIATIONS = frozenset(_ABBREVIATED.split())
"""Words that a dot after them does not end a sentence (lowercase, without the last dot)."""

_TERMINATORS = ".!?…"
_CLOSERS = "\"')]»\u201d\u2019"  # with the closing curly quotes
_OPENERS = "\"'([«\u201c\u2018"
_BULLETS = "-*•"
_UNDECIDED = -1


class SentenceSplitter:
    """Feed it text deltas; it returns the sentences each delta completed.

    >>> splitter = SentenceSplitter()
    >>> splitter.feed("It rains. It po"), splitter.feed("urs."), splitter.flush()
    (['It rains.'], [], ['It pours.'])
    """

    def __init__(self) -> None:
        self._text = ""  # the sentence being written, and any look-ahead after it
        self._scan = 0  # where the next possible end may lie

    def feed(self, delta: str) -> list[str]:
        """Add ``delta``; the sentences whose end it revealed, in order."""
        self._text += delta
        return self._drain(final=False)

    def flush(self) -> list[str]:
        """The end of the text: the sentences still held (at most one, plus any decided)."""
        found = self._drain(final=True)
        rest = self._text.strip()
        self._text, self._scan = "", 0
        if rest:
            found.append(rest)
        return found

    def _drain(self, *, final: bool) -> list[str]:
        found: list[str] = []
        while True:
            end = self._next_end(final=final)
            if end == _UNDECIDED:
                return found
            sentence = self._text[:end].strip()
            self._text = self._text[end:].lstrip()
            self._scan = 0
            if sentence:
                found.append(sentence)

    def _next_end(self, *, final: bool) -> int:
        """The end of the current sentence, or ``_UNDECIDED`` (no end yet, or more text needed)."""
        text = self._text
        i = self._scan
        while i < len(text):
            char = text[i]
            if char in _TERMINATORS:
                end, resume = _after_terminator(text, i, final)
            elif char == "\n":
                end, resume = _after_newline(text, i, final)
            else:
                i += 1
                continue
            if resume == _UNDECIDED:  # the deciding characters have not come yet
                self._scan = i
                return _UNDECIDED
            if end != _UNDECIDED:
                return end
            i = resume
        self._scan = i
        return _UNDECIDED


def _after_terminator(text: str, i: int, final: bool) -> tuple[int, int]:
    """``(end, resume)`` for a terminator at ``i``: an end, or where to scan on (or undecided)."""
    j = i
    while j < len(text) and text[j] in _TERMINATORS:
        j += 1
    while j < len(text) and text[j] in _CLOSERS:
        j += 1
    if j == len(text):
        return (j, j) if final else (_UNDECIDED, _UNDECIDED)
    if not text[j].isspace():
        return _UNDECIDED, j  # 3.14, e.g.x, "?"x: not an end
    k = j
    while k < len(text) and text[k].isspace():
        k += 1
    if k == len(text):
        return (j, j) if final else (_UNDECIDED, _UNDECIDED)
    if "\n\n" in text[j:k]:
        return j, j
    if text[k].islower():
        return _UNDECIDED, j  # from j: a newline in the whitespace may still end it
    if text[i] == "." and j == i + 1 and _dot_continues(text[:i]):
        return _UNDECIDED, j
    return j, j


def _dot_continues(before: str) -> bool:
    """Whether a single dot after ``before`` leaves the sentence open (abbreviation, initial...)."""
    words = before.split()
    if not words:
        return False
    word = words[-1].lstrip(_OPENERS)
    if len(word) == 1 and word.isalpha() and word.isupper():
        return True  # an initial
    if word.isdigit() and len(words) == 1:
        return True  # a numbered list item
    return word.lower() in ABBREVIATIONS


def _after_newline(text: str, i: int, final: bool) -> tuple[int, int]:
    """``(end, resume)`` for a newline at ``i`` (see the module docstring for the rule)."""
    k = i + 1
    while k < len(text) and text[k] in " \t\r":
        k += 1
    if k == len(text):
        return (i, i) if final else (_UNDECIDED, _UNDECIDED)
    if text[k] == "\n":
        return i, i
    line_start = text.lstrip()
    if _marker(line_start, 0, final=True) or line_start.startswith("#"):
        return i, i
    starts_item = _marker(text, k, final=final)
    if starts_item is None:
        return _UNDECIDED, _UNDECIDED
    if starts_item or text[k] == "#":
        return i, i
    return _UNDECIDED, k


def _marker(text: str, k: int, *, final: bool) -> bool | None:
    """Whether a list marker starts at ``k``; None while the text so far cannot tell."""
    if k >= len(text):
        return False if final else None
    if text[k] in _BULLETS:
        k += 1
    else:
        digits = 0
        while k < len(text) and text[k].isdigit() and digits <= 3:
            k += 1
            digits += 1
        if digits == 0 or digits > 3:
            return False
        if k == len(text):
            return False if final else None
        if text[k] not in ".)":
            return False
        k += 1
    if k == len(text):
        return False if final else None
    return text[k].isspace()


def sentences(text: str) -> list[str]:
    """The sentences of a whole text (what streaming any chunking of it yields)."""
    splitter = SentenceSplitter()
    return [*splitter.feed(text), *splitter.flush()]


def sentences_of(deltas: Iterable[str]) -> list[str]:
    """The sentences of a text given as a sequence of deltas."""
    splitter = SentenceSplitter()
    found = [sentence for delta in deltas for sentence in splitter.feed(delta)]
    return found + splitter.flush()


async def split_sentences(deltas: AsyncIterable[str]) -> AsyncIterator[str]:
    """Each sentence of a stream of text deltas, yielded the moment its end is seen.

    A generation stage is then a split whose children are sentences::

        @app.split(source=app.input, schema="alto.Text")
        async def answer(query):
            async for sentence in split_sentences(llm.stream(prompt(query))):
                yield {"text": sentence}
    """
    splitter = SentenceSplitter()
    try:
        async for delta in deltas:
            for sentence in splitter.feed(delta):
                yield sentence
        for sentence in splitter.flush():
            yield sentence
    finally:
        close = getattr(deltas, "aclose", None)
        if close is not None:  # stopped early: stop the generation now, not when collected
            await close()
