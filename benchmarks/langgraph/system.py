"""One LangGraph variant of one app as a bench :class:`~benchmarks.systems.base.System`.

The models are the alto-stream components, built from the same
:class:`~benchmarks.systems.base.BenchConfig` as the alto system's (the LLM
backend, its URL and priority, the index), so that only orchestration differs.
Each query is one ``ainvoke`` of the compiled graph with ``thread_id`` = the
query id, checkpointed in memory (``InMemorySaver``) or durably in one SQLite
file under ``config.workdir`` (``AsyncSqliteSaver``).

Partial results reach the caller's ``on_partial`` through :func:`partial`,
which a node calls (the callback travels in a context variable, as the LLM
request's priority does: each query's tasks see their own).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from alto_stream.ancestry import Ancestry
from alto_stream.components.llm import LLM, LLMConfig, create_llm
from alto_stream.context import bind_record, unbind_record
from alto_stream.errors import ConfigError
from alto_stream.runtime.failures import reason_of
from benchmarks.systems.base import BenchConfig
from workers.common import Embeds, Searcher

__all__ = ["CHECKPOINTERS", "LangGraphSystem", "Parts", "at", "failure", "partial", "parts_for"]

CHECKPOINTERS = ("memory", "sqlite")

T = TypeVar("T")

_ON_PARTIAL: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "langgraph_on_partial", default=None
)


def partial(result: Mapping[str, Any] | None = None) -> None:
    """Tell the query's caller that a partial result appeared (a node calls it).

    A failed step's ``result`` (one with an ``error``) is none, as alto's bench counts
    no error marker as a partial result (before, a failed sub-answer counted here).
    """
    callback = _ON_PARTIAL.get()
    if callback is not None and not (result or {}).get("error"):
        callback()


def failure(exc: BaseException, stage: str | None = None) -> str:
    """A failed step's reason, worded as the alto runtime words an error marker's.

    ``stage`` is the alto stage the step stands for, whose name leads the reason as in
    alto's markers; without it, the stage :func:`at` tagged the error with.
    """
    return reason_of(exc, stage or getattr(exc, "alto_stage", None))


async def at(stage: str, step: Awaitable[T]) -> T:
    """``await step``; an error it raises is tagged with the alto stage it stands for.

    For a fused step that does the work of several alto stages, so that
    :func:`failure` names the one that failed.
    """
    try:
        return await step
    except Exception as exc:
        exc.alto_stage = stage  # type: ignore[attr-defined]
        raise


@dataclass(frozen=True)
class Parts:
    """The components a graph's nodes call: the very objects the alto apps use."""

    llm: LLM
    searcher: Searcher
    embedder: Embeds | None = None  # rag's sentence scoring; default: the searcher's

    @property
    def embeds(self) -> Embeds:
        """The embedder that scores sentences (rag)."""
        return self.embedder or self.searcher.embedder  # type: ignore[attr-defined]


def parts_for(config: BenchConfig) -> Parts:
    """The LLM (``ALTO_LLM_*`` overridden by ``config``) and the retriever over the index."""
    from alto_stream.components.index import Retriever
    from workers.common import index_dir

    llm_config = LLMConfig.from_env(
        backend=config.llm_backend,
        model=config.llm_model,
        url=config.llm_url,
        priority=config.priority,
        seed=config.llm_seed,
    )
    path = Path(config.index_dir).expanduser() if config.index_dir else index_dir()
    return Parts(llm=create_llm(llm_config), searcher=Retriever(path, k=3))


class Compiles(Protocol):
    """An app module of this package: its variants, compiled against a checkpointer."""

    def compile(self, variant: str, parts: Parts, checkpointer: Any) -> Any:
        """The runnable (``ainvoke({"question": ...}, config)`` -> ``{"result": report}``)."""
        ...


class LangGraphSystem:
    """One app in one LangGraph variant, with the memory or the SQLite checkpointer."""

    def __init__(
        self, config: BenchConfig, variant: str, app: Compiles, *, parts: Parts | None = None
    ) -> None:
        if config.checkpointer not in CHECKPOINTERS:
            raise ConfigError(
                f"unknown checkpointer {config.checkpointer!r}: choose one of "
                f"{', '.join(CHECKPOINTERS)}"
            )
        durable = config.checkpointer == "sqlite"
        self.name = f"langgraph-{variant}" + ("-sqlite" if durable else "")
        self.admitted: dict[str, float] = {}  # no admission limit: never filled
        self.config = config
        self.variant = variant
        self._app = app
        self._parts = parts
        self._stack = contextlib.AsyncExitStack()
        self._graph: Any = None

    @property
    def parts(self) -> Parts:
        """The components in use (after :meth:`start`)."""
        if self._parts is None:
            raise ConfigError(f"{self.name} is not started")
        return self._parts

    async def start(self) -> None:
        """Load the models and the index, open the checkpointer, compile the graph."""
        if self._parts is None:
            self._parts = parts_for(self.config)
        await self._parts.llm.start()
        open_index = getattr(self._parts.searcher, "aopen", None)
        if open_index is not None:
            await open_index()
        # The retriever's query model, and the sentence scorer when it is another one.
        for embedder in {id(e): e for e in self._embedders()}.values():
            load = getattr(embedder, "aload", None)
            if load is not None:
                await load()
        self._graph = self._app.compile(self.variant, self._parts, await self._checkpointer())

    def _embedders(self) -> list[Any]:
        parts = self.parts
        found = [parts.embedder, getattr(parts.searcher, "embedder", None)]
        return [e for e in found if e is not None]

    async def _checkpointer(self) -> Any:
        if self.config.checkpointer == "memory":
            from langgraph.checkpoint.memory import InMemorySaver

            return InMemorySaver()
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        path = Path(self.config.workdir) / f"langgraph-{self.config.app}-{self.variant}.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            stale.unlink(missing_ok=True)  # a fresh file: thread ids are query ids
        saver = await self._stack.enter_async_context(AsyncSqliteSaver.from_conn_string(str(path)))
        await saver.setup()
        return saver

    async def run(self, query_id: str, question: str, on_partial: Callable[[], None]) -> str:
        """Answer one query: the final report as JSON text (the alto app's final value)."""
        if self._graph is None:
            raise ConfigError(f"{self.name} is not started")
        # The LLM calls take their request id and priority (the arrival time) from here.
        record = bind_record(Ancestry.root(query_id, query_time=time.time()))
        callback = _ON_PARTIAL.set(on_partial)
        try:
            out = await self._graph.ainvoke(
                {"question": question}, {"configurable": {"thread_id": query_id}}
            )
        finally:
            _ON_PARTIAL.reset(callback)
            unbind_record(record)
        return json.dumps(out["result"], ensure_ascii=False)

    async def close(self) -> None:
        """Close the checkpointer and release the model."""
        await self._stack.aclose()
        if self._parts is not None:
            await self._parts.llm.close()
        self._graph = None
