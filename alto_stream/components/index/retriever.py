"""The :class:`Retriever`: query texts to the best passages of an index."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from alto_stream.components.embed import Embedder, TextEmbedder
from alto_stream.components.index.corpus import WIKI, load_corpus
from alto_stream.components.index.store import Index, Manifest, Passage, index_path, open_index

__all__ = ["Retriever"]

log = logging.getLogger(__name__)


class Retriever:
    """Exact top-k retrieval over one index; cheap to create, loads on first use.

    On first use (or :meth:`open`) the index is opened (once per process, its
    vectors memory-mapped) and checked: the query embedder must be the model the
    index was built with (else :class:`ModelMismatchError`), and, with
    ``check_corpus``, the corpus must be unchanged since the build (else
    :class:`StaleIndexError`; a corpus file that is gone is only logged).
    ``embedder`` defaults to the index's own model and backend.
    """

    def __init__(
        self,
        index: str | os.PathLike[str],
        *,
        embedder: TextEmbedder | None = None,
        check_corpus: bool = True,
        k: int = 10,
    ) -> None:
        self.path = index_path(index)
        self.k = k
        self.check_corpus = check_corpus
        self._embedder: TextEmbedder | None = embedder
        self._index: Index | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Retriever({str(self.path)!r}, k={self.k}, opened={self._index is not None})"

    @property
    def embedder(self) -> TextEmbedder:
        """The query embedder (opens the index when none was given)."""
        self.open()
        assert self._embedder is not None
        return self._embedder

    def open(self) -> Index:
        """Open and check the index, load the query model (blocking; once)."""
        with self._lock:
            if self._index is None:
                manifest = Manifest.read(self.path.resolve())
                current = self._corpus_sha256(manifest) if self.check_corpus else None
                index = open_index(self.path, corpus_sha256=current)
                if self._embedder is None:
                    self._embedder = Embedder(manifest.model, backend=manifest.backend)  # type: ignore[arg-type]
                index.check_model(self._embedder.name, self._embedder.dimension)
                if self._embedder.backend != manifest.backend:
                    log.warning(
                        "index %s was embedded with the %s backend, queries use %s",
                        self.path,
                        manifest.backend,
                        self._embedder.backend,
                    )
                self._index = index
            return self._index

    async def aopen(self) -> Index:
        """:meth:`open` in a thread."""
        return await asyncio.to_thread(self.open)

    def search(self, query: str, k: int | None = None) -> list[Passage]:
        """The best ``k`` passages for ``query``, best first (blocking)."""
        return self.search_many([query], k)[0]

    def search_many(self, queries: Sequence[str], k: int | None = None) -> list[list[Passage]]:
        """:meth:`search` for several queries, embedded in one batch (blocking)."""
        index = self.open()
        vectors = self.embedder.embed(list(queries))
        return index.search(vectors, self.k if k is None else k)

    async def asearch(self, query: str, k: int | None = None) -> list[Passage]:
        """:meth:`search` in a thread: the event loop runs on meanwhile."""
        return await asyncio.to_thread(self.search, query, k)

    async def asearch_many(
        self, queries: Sequence[str], k: int | None = None
    ) -> list[list[Passage]]:
        """:meth:`search_many` in a thread."""
        return await asyncio.to_thread(self.search_many, queries, k)

    def _corpus_sha256(self, manifest: Manifest) -> str | None:
        if manifest.corpus != WIKI and not Path(manifest.corpus).is_file():
            log.warning(
                "corpus %s of index %s is not on this machine: not checked for changes",
                manifest.corpus,
                self.path,
            )
            return None
        limit = manifest.extra.get("limit")
        return load_corpus(manifest.corpus, limit=limit if isinstance(limit, int) else None).sha256
