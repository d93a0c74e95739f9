"""An index on disk, and exact top-k search over its memory-mapped vectors.

A directory with three files::

    manifest.json    format, model, backend, dimension, corpus source and sha256, counts
    vectors.npy      float32 matrix, one unit-length row per passage
    passages.jsonl   one line per row: id, doc_id, title, text, meta

Search is a dot product of the (unit-length) query with every row, so the score
is the cosine similarity, and a partial sort for the top k: exact, no
approximation. The matrix is memory-mapped (read-only): the pages are shared by
every process on the machine that opens the same index.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alto_stream.components.index.errors import (
    IndexRefusedError,
    ModelMismatchError,
    StaleIndexError,
)
from alto_stream.settings import data_home

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = [
    "FORMAT",
    "Index",
    "Manifest",
    "Passage",
    "default_index_dir",
    "forget",
    "open_index",
]

log = logging.getLogger(__name__)

FORMAT = 1
"""The on-disk format's version; an index of another version is refused (rebuild it)."""

MANIFEST, VECTORS, PASSAGES = "manifest.json", "vectors.npy", "passages.jsonl"


def default_index_dir(corpus: str, model: str) -> Path:
    """``~/.cache/alto-stream/indexes/<corpus>-<model>`` (``ALTO_HOME`` moves the root)."""
    stem = Path(corpus).stem if corpus != "wiki" else "wiki"
    model_stem = Path(model).name or model
    return data_home() / "indexes" / f"{stem}-{model_stem}"


def index_path(index: str | os.PathLike[str]) -> Path:
    """``index`` as a folder: ``wiki``, when no folder of that name is here, is the default
    index of the packaged Wikipedia summaries (as the CLI and :class:`Retriever` take it)."""
    path = Path(index).expanduser()
    if str(index) != "wiki" or path.exists():
        return path
    from alto_stream.components.embed import DEFAULT_MODEL

    return default_index_dir("wiki", DEFAULT_MODEL)


@dataclass(frozen=True)
class Manifest:
    """What an index was built from; compared before any search."""

    model: str
    backend: str
    dimension: int
    corpus: str
    """``wiki`` or the corpus file's absolute path."""
    corpus_sha256: str
    documents: int
    passages: int
    passage_words: int
    build_seconds: float = 0.0
    created: str = ""
    format: int = FORMAT
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The manifest file's text."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        """The manifest of the index in ``directory``; :class:`IndexRefusedError` if unusable."""
        path = directory / MANIFEST
        if not directory.exists():
            raise IndexRefusedError(
                f"index {directory} does not exist; fix: alto-stream index build --out "
                f"{directory}, or give the folder of an index that was built",
                path=directory,
            )
        if not path.is_file():
            raise IndexRefusedError(
                f"{directory} is not an index (no {MANIFEST}); fix: alto-stream index build "
                f"--out {directory}",
                path=directory,
            )
        try:
            data = json.loads(path.read_text())
            manifest = cls(**data)
        except (json.JSONDecodeError, TypeError) as exc:
            raise StaleIndexError(
                f"{path} is not a manifest this version reads ({exc}); fix: rebuild the index",
                path=directory,
            ) from exc
        if manifest.format != FORMAT:
            raise StaleIndexError(
                f"index {directory} has format {manifest.format}, this version reads {FORMAT}; "
                "fix: rebuild it with alto-stream index build",
                path=directory,
            )
        return manifest


@dataclass(frozen=True)
class Passage:
    """One retrieved passage: its ids, title, text, metadata and cosine score."""

    id: str
    doc_id: str
    title: str
    text: str
    score: float
    meta: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


class Index:
    """An opened index: the manifest, the memory-mapped vectors, the passages' metadata."""

    def __init__(self, directory: Path, manifest: Manifest, vectors: NDArray[np.float32]) -> None:
        self.directory = directory
        self.manifest = manifest
        self.vectors = vectors
        self.rows = _read_rows(directory / PASSAGES, manifest.passages, directory)
        """One dict per passage, in the vectors' order: id, doc_id, title, text, meta."""

    def __len__(self) -> int:
        return self.manifest.passages

    def __repr__(self) -> str:
        m = self.manifest
        return f"Index({str(self.directory)!r}, {m.passages} passages, model={m.model!r})"

    def check_model(self, model: str, dimension: int | None = None) -> None:
        """:class:`ModelMismatchError` unless queries from ``model`` fit these vectors."""
        m = self.manifest
        if model != m.model:
            raise ModelMismatchError(
                f"index {self.directory} was built with model {m.model!r}, but queries would be "
                f"embedded with {model!r}; fix: query with {m.model!r}, or rebuild the index "
                f"with --model {model}",
                path=self.directory,
            )
        if dimension is not None and dimension != m.dimension:
            raise ModelMismatchError(
                f"index {self.directory} holds {m.dimension}-dimensional vectors, the query "
                f"model gives {dimension}; fix: rebuild the index with this model",
                path=self.directory,
            )

    def search(self, queries: NDArray[np.float32], k: int = 10) -> list[list[Passage]]:
        """The ``k`` best passages of each query row (unit-length vectors), best first."""
        import numpy as np

        matrix = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if matrix.shape[1] != self.manifest.dimension:
            raise ModelMismatchError(
                f"query vectors have {matrix.shape[1]} dimensions, index {self.directory} "
                f"holds {self.manifest.dimension}",
                path=self.directory,
            )
        k = max(0, min(k, len(self)))
        scores = matrix @ self.vectors.T
        found = []
        for row in scores:
            top = np.argpartition(-row, k - 1)[:k] if 0 < k < len(row) else np.arange(k)
            top = top[np.argsort(-row[top], kind="stable")]
            found.append([self._passage(int(i), float(row[i])) for i in top])
        return found

    def _passage(self, row: int, score: float) -> Passage:
        data = self.rows[row]
        return Passage(data["id"], data["doc_id"], data["title"], data["text"], score, data["meta"])


def _read_rows(path: Path, expected: int, directory: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise StaleIndexError(
            f"index {directory} has no {PASSAGES}; fix: rebuild it", path=directory
        )
    with path.open("rb") as lines:  # bytes: a line that is not UTF-8 is refused as one
        rows = [_read_row(line, n, directory) for n, line in enumerate(lines, 1) if line.strip()]
    if len(rows) != expected:
        raise StaleIndexError(
            f"index {directory}: {PASSAGES} has {len(rows)} passages, the manifest says "
            f"{expected} (an interrupted or mixed build); fix: rebuild it",
            path=directory,
        )
    return rows


_ROW_FIELDS = frozenset({"id", "doc_id", "title", "text", "meta"})


def _read_row(line: bytes, number: int, directory: Path) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        where = f"{exc.msg}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else exc
        raise _bad_line(directory, number, f"not JSON ({where})") from exc
    if not isinstance(row, dict) or not row.keys() >= _ROW_FIELDS:
        raise _bad_line(
            directory, number, f"not a passage (an object of {', '.join(sorted(_ROW_FIELDS))})"
        )
    return row


def _bad_line(directory: Path, number: int, why: str) -> StaleIndexError:
    return StaleIndexError(
        f"index {directory}: line {number} of {PASSAGES} is {why}: a damaged or edited file; "
        "fix: rebuild it",
        path=directory,
    )


_opened: dict[Path, Index] = {}
_opening = threading.Lock()


def open_index(directory: str | os.PathLike[str], *, corpus_sha256: str | None = None) -> Index:
    """The index in ``directory``, opened once per process (the vectors memory-mapped).

    ``corpus_sha256``: the hash of the corpus as it is now; a different one in
    the manifest means the index is stale (:class:`StaleIndexError`).
    """
    path = Path(directory).expanduser().resolve()
    manifest = Manifest.read(path)
    if corpus_sha256 is not None and corpus_sha256 != manifest.corpus_sha256:
        raise StaleIndexError(
            f"index {path} is stale: corpus {manifest.corpus} changed since the build "
            f"(sha256 {manifest.corpus_sha256[:12]}... then, {corpus_sha256[:12]}... now); "
            f"fix: alto-stream index build --corpus {manifest.corpus} --out {path}",
            path=path,
        )
    with _opening:
        cached = _opened.get(path)
        if cached is not None and cached.manifest == manifest:
            return cached
        index = Index(path, manifest, _map_vectors(path, manifest))
        _opened[path] = index
        log.info("opened index %s: %d passages, model %s", path, len(index), manifest.model)
        return index


def _map_vectors(path: Path, manifest: Manifest) -> NDArray[np.float32]:
    import numpy as np

    try:
        vectors = np.load(path / VECTORS, mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty file
        raise StaleIndexError(
            f"index {path}: cannot read {VECTORS} ({exc}); fix: rebuild it", path=path
        ) from exc
    shape = (manifest.passages, manifest.dimension)
    if vectors.dtype != np.float32 or vectors.shape != shape:
        raise StaleIndexError(
            f"index {path}: {VECTORS} is {vectors.dtype} {vectors.shape}, the manifest says "
            f"float32 {shape}; fix: rebuild it",
            path=path,
        )
    return vectors  # type: ignore[no-any-return,unused-ignore]


def forget(directory: str | os.PathLike[str] | None = None) -> None:
    """Drop opened indexes from this process's cache (all of them, or one)."""
    with _opening:
        if directory is None:
            _opened.clear()
        else:
            _opened.pop(Path(directory).expanduser().resolve(), None)
