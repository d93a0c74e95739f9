"""What the four AI apps share: JSON payloads, the model, the retriever, passages as dicts.

The apps pass structured records as ``alto.Json`` (one JSON document per
record: a claim with its sentence, a sub-question with its passages); the
outputs are JSON reports. The model and the retriever are created per process
and load on first use (or when a worker of a stage that needs them starts),
never when a command merely loads the app.

Configuration is the environment only, so the same app runs on a laptop CPU
and on a GPU host:

    ALTO_LLM_BACKEND / ALTO_LLM_MODEL / ALTO_LLM_URL   the LLM (see alto_stream.components.llm)
    ALTO_INDEX_DIR                                     the index (default: the wiki index)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from alto_stream import resources
from alto_stream.components.llm import LLM, shared_llm
from workers import prompts
from workers.parsing import parse_answer

__all__ = [
    "RETRIEVAL_IN_FLIGHT",
    "Searcher",
    "app_models",
    "index_dir",
    "llm_for",
    "llm_in_flight",
    "pack",
    "passages",
    "search_passages",
    "searcher_for",
    "short_answer",
    "unpack",
]


RETRIEVAL_IN_FLIGHT = 16
"""Records a retrieval stage works on at once (searches are cheap and mostly wait)."""


def llm_in_flight() -> int:
    """Records an LLM stage works on at once, per worker: ``ALTO_LLM_IN_FLIGHT``, else by backend.

    A model server (``openai``: vLLM or any OpenAI-compatible one; ``vllm`` in
    process) batches many requests and orders them itself (by the query's
    arrival time when priority is on), so a stage keeps 32 calls open: a lower
    cap would queue queries in the worker while the server has room. The
    in-process llama.cpp model serves one call at a time, oldest query first,
    so 4 are enough to keep it busy.
    """
    if configured := os.environ.get("ALTO_LLM_IN_FLIGHT"):
        value = int(configured)
        if value < 1:
            raise ValueError(f"ALTO_LLM_IN_FLIGHT must be >= 1, got {value}")
        return value
    return 32 if os.environ.get("ALTO_LLM_BACKEND", "llama_cpp") in ("openai", "vllm") else 4


def pack(value: dict[str, Any]) -> dict[str, Any]:
    """A dict as an ``alto.Json`` record."""
    return {"json": json.dumps(value, ensure_ascii=False)}


def unpack(record: dict[str, Any]) -> dict[str, Any]:
    """An ``alto.Json`` record (or a plain ``alto.Text``/``alto.Query`` one) as a dict."""
    if "json" in record:
        value = json.loads(record["json"])
        return value if isinstance(value, dict) else {"value": value}
    return dict(record)


class PassageLike(Protocol):
    """What the apps read of a retrieved passage."""

    @property
    def title(self) -> str: ...

    @property
    def text(self) -> str: ...

    @property
    def score(self) -> float: ...


class Searcher(Protocol):
    """What the apps need of a retriever (the real one, or a test double)."""

    async def asearch(self, query: str, k: int | None = None) -> Sequence[PassageLike]:
        """The best ``k`` passages for ``query``, best first."""
        ...


class Embeds(Protocol):
    """What the rag app needs of an embedder: unit vectors, one per text."""

    async def aembed(self, texts: Sequence[str]) -> Any:
        """An array of shape (len(texts), dimension), rows of unit length."""
        ...


def passages(found: Iterable[PassageLike]) -> list[dict[str, Any]]:
    """Passages as JSON-ready dicts (title, text, score rounded)."""
    return [{"title": p.title, "text": p.text, "score": round(float(p.score), 4)} for p in found]


async def search_passages(searcher: Searcher, query: str, k: int) -> list[dict[str, Any]]:
    """The best ``k`` passages for ``query``, as dicts (:func:`passages`)."""
    return passages(await searcher.asearch(query, k))


async def short_answer(model: LLM, question: str, found: list[dict[str, Any]]) -> dict[str, Any]:
    """A short answer to ``question`` from the passages ``found`` alone, with their titles.

    Raises :class:`~workers.parsing.ParseError` when the model's text has no answer.
    """
    context = [f"{p['title']}: {p['text']}" for p in found]
    raw = await model.complete(prompts.short_answer_prompt(question, context), prompts.SHORT)
    return {"answer": parse_answer(raw), "titles": [p["title"] for p in found]}


def llm_for(stages: Sequence[str], app: str | None = None) -> LLM:
    """This process's LLM (``ALTO_LLM_*``), loaded when ``app``'s worker of ``stages`` starts."""
    return shared_llm(stages=list(stages), preload=True, app=app)


def app_models(
    llm: LLM | None,
    searcher: Searcher | None,
    *,
    llm_stages: Sequence[str],
    retrieval_stages: Sequence[str],
    app: str | None = None,
) -> tuple[LLM, Searcher]:
    """An app's model and retriever: those given (tests, benchmarks), else this process's.

    The defaults load when a worker of ``app``'s ``llm_stages`` (the model) or
    ``retrieval_stages`` (the index and its query model) starts; a model given
    is declared for no stage, so the app's workers load no default.
    """
    return llm or llm_for(llm_stages, app), searcher or searcher_for(retrieval_stages, app)


def index_dir() -> Path:
    """``ALTO_INDEX_DIR``, or the default index of the packaged Wikipedia summaries."""
    if configured := os.environ.get("ALTO_INDEX_DIR"):
        return Path(configured).expanduser()
    from alto_stream.components.embed import DEFAULT_MODEL
    from alto_stream.components.index import WIKI, default_index_dir

    return default_index_dir(WIKI, str(DEFAULT_MODEL))


class _Preload:
    """A retriever as a process resource: its index and query model load at worker start."""

    def __init__(self, retriever: Any) -> None:
        self.retriever = retriever

    @property
    def name(self) -> str:
        return f"retriever[{self.retriever.path.name}]"

    async def check(self) -> None:
        """Nothing to check before loading (a missing index is a clear error on open)."""

    async def start(self) -> None:
        await self.retriever.aopen()
        load = getattr(self.retriever.embedder, "aload", None)
        if load is not None:
            await load()

    async def close(self) -> None:
        """The index is memory-mapped and the model is freed with the process."""


_RETRIEVERS: dict[Path, _Preload] = {}


def searcher_for(stages: Sequence[str] = (), app: str | None = None) -> Searcher:
    """This process's retriever over :func:`index_dir` (creating it loads nothing).

    A worker of one of ``app``'s ``stages`` opens the index and loads the query
    model when it starts, so that its first record does not wait for them.
    """
    from alto_stream.components.index import Retriever

    path = index_dir()
    if path not in _RETRIEVERS:
        _RETRIEVERS[path] = _Preload(Retriever(path, k=3))
    if stages:
        resources.register(_RETRIEVERS[path], stages=stages, preload=True, app=app)
    retriever: Searcher = _RETRIEVERS[path].retriever
    return retriever
