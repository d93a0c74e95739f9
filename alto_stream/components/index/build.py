"""Build an index: chunk a corpus into passages, embed them, write the files atomically."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alto_stream.components.embed import TextEmbedder
from alto_stream.components.index.corpus import Corpus, chunk_text
from alto_stream.components.index.errors import IndexRefusedError
from alto_stream.components.index.store import MANIFEST, PASSAGES, VECTORS, Manifest

__all__ = [
    "DEFAULT_PASSAGE_WORDS",
    "PassageRow",
    "Progress",
    "build_index",
    "passages_of",
    "up_to_date",
]

log = logging.getLogger(__name__)

DEFAULT_PASSAGE_WORDS = 120
"""Words per passage: under all-MiniLM-L6-v2's 256-token window with room to spare."""

_EMBED_CHUNK = 256
"""Passages embedded per call (and per progress report)."""

Progress = Callable[[int, int], None]
"""Called as ``progress(passages_done, passages_total)`` while the vectors are computed."""


@dataclass(frozen=True)
class PassageRow:
    """One passage of a document, as ``passages.jsonl`` holds it."""

    id: str
    doc_id: str
    title: str
    text: str
    meta: dict[str, object]


def passages_of(corpus: Corpus, passage_words: int) -> list[PassageRow]:
    """Every document's passages, in corpus order; ids are ``<doc id>#<n>``."""
    rows = []
    for doc in corpus.documents:
        for n, text in enumerate(chunk_text(doc.text, passage_words)):
            rows.append(PassageRow(f"{doc.id}#{n}", doc.id, doc.title, text, doc.meta))
    return rows


def up_to_date(directory: Path, corpus: Corpus, embedder: TextEmbedder, passage_words: int) -> bool:
    """Whether ``directory`` already holds this corpus's index with this model and passage size."""
    try:
        m = Manifest.read(directory)
    except IndexRefusedError:
        return False
    return (
        m.corpus_sha256 == corpus.sha256
        and m.model == embedder.name
        and m.backend == embedder.backend
        and m.passage_words == passage_words
        and (directory / VECTORS).is_file()
        and (directory / PASSAGES).is_file()
    )


def build_index(
    corpus: Corpus,
    out: str | os.PathLike[str],
    *,
    embedder: TextEmbedder,
    passage_words: int = DEFAULT_PASSAGE_WORDS,
    progress: Progress | None = None,
) -> Manifest:
    """Embed ``corpus`` into an index at ``out`` (replacing any index there); its manifest.

    The files are written to a sibling directory and moved into place at the
    end, so an interrupted build leaves any previous index whole.
    """
    import numpy as np

    began = time.perf_counter()
    target = Path(out).expanduser().resolve()
    _check_target(target)
    rows = passages_of(corpus, passage_words)
    embedder.load()
    staging = target.with_name(f".{target.name}.building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        vectors = np.lib.format.open_memmap(
            staging / VECTORS, mode="w+", dtype=np.float32, shape=(len(rows), embedder.dimension)
        )
        for first in range(0, len(rows), _EMBED_CHUNK):
            batch = rows[first : first + _EMBED_CHUNK]
            vectors[first : first + len(batch)] = embedder.embed([r.text for r in batch])
            if progress is not None:
                progress(first + len(batch), len(rows))
        vectors.flush()
        del vectors
        with (staging / PASSAGES).open("w", encoding="utf-8") as lines:
            for row in rows:
                record = {"id": row.id, "doc_id": row.doc_id, "title": row.title, "text": row.text}
                line = json.dumps({**record, "meta": row.meta}, ensure_ascii=False)
                lines.write(line + "\n")
        manifest = Manifest(
            model=embedder.name,
            backend=embedder.backend,
            dimension=embedder.dimension,
            corpus=corpus.source,
            corpus_sha256=corpus.sha256,
            documents=len(corpus.documents),
            passages=len(rows),
            passage_words=passage_words,
            build_seconds=round(time.perf_counter() - began, 3),
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            extra={} if corpus.limit is None else {"limit": corpus.limit},
        )
        (staging / MANIFEST).write_text(manifest.to_json())
        _swap(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("built index %s: %d passages in %.1f s", target, len(rows), manifest.build_seconds)
    return manifest


def _check_target(target: Path) -> None:
    """Refuse to replace a directory that holds something other than an index."""
    if target.is_file() or (
        target.is_dir() and not (target / MANIFEST).is_file() and any(target.iterdir())
    ):
        raise IndexRefusedError(
            f"{target} exists and is not an index: not overwriting it; fix: choose another --out",
            path=target,
        )


def _swap(staging: Path, target: Path) -> None:
    """Move ``staging`` to ``target``; an old index there is removed after the move."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
