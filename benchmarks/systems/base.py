"""What `alto-stream bench APP --system ...` drives: one system answering one app's queries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class BenchConfig:
    """What every system of one run shares, so that only orchestration differs."""

    app: str  # "factcheck" | "fanout" | "rag" | "cove"
    llm_backend: str = "openai"  # as ALTO_LLM_BACKEND; "openai" against the emulated engine
    llm_url: str | None = None  # e.g. http://127.0.0.1:PORT/v1 (the emulated engine)
    llm_model: str | None = None
    priority: bool = True  # send the query's arrival time as vLLM's priority
    index_dir: str | None = None  # as ALTO_INDEX_DIR
    replicas: dict[str, int] = field(default_factory=dict)  # alto: stage -> worker processes
    admission: int | None = None  # alto: queries in flight per app (None: no limit)
    llm_seed: int | None = None  # as ALTO_LLM_SEED: the same prompt gets the same answer
    checkpointer: str = "memory"  # langgraph: "memory" | "sqlite"
    workdir: str = ".alto/bench"  # scratch space (sqlite files, logs)
    gate_slots: int = 1  # <system>+gate: the gate's slots (the engine's requests at once)
    keep_topics: bool = False  # alto: leave the run's topics on the broker (else deleted)
    extra: dict[str, Any] = field(default_factory=dict)


class System(Protocol):
    """One orchestration system. `run` is called concurrently, once per query."""

    name: str  # "alto", "langgraph-graph", "langgraph-fused", "langgraph-functional"
    # (+ "-sqlite" when the durable checkpointer is on)
    admitted: dict[str, float]
    """Query id -> when it was admitted (epoch s): systems with an admission limit fill it."""

    async def start(self) -> None:
        """Load models/graphs/workers; return when a query can be served."""

    async def run(self, query_id: str, question: str, on_partial: Callable[[], None]) -> str:
        """Answer one query; call on_partial() whenever a partial result appears
        (a streamed answer sentence, a sub-answer, a per-sentence report...).
        Return the final result as text (JSON text for the apps' reports)."""

    async def close(self) -> None:
        """Stop everything start() started."""
