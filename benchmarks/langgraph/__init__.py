"""The four AI apps in LangGraph, side by side with alto-stream (see docs/langgraph.md).

Each app calls the very step code of its alto-stream version (the step
functions of :mod:`workers.factcheck`, :mod:`workers.fanout`,
:mod:`workers.rag`, :mod:`workers.cove`: same prompts, parsers, LLM backend,
retriever and embedder), so that only orchestration differs. Three variants:

- ``graph``: the graph API, one node per alto stage (``Send`` for fan-out,
  ``operator.add`` reducers for fan-in, async nodes): what the Alto paper
  compares against;
- ``fused``: the graph API with steps merged into fewer nodes;
- ``functional``: the functional API (``@entrypoint``/``@task``) with
  hand-written asyncio concurrency and streaming.

Each runs with the in-memory checkpointer or the durable SQLite one
(``BenchConfig.checkpointer``), ``thread_id`` = the query id::

    system = make_system(BenchConfig(app="rag", llm_url="http://127.0.0.1:8000/v1"), "graph")
    await system.start()
    report_json = await system.run("q1", "Where does the Nile flow?", on_partial=lambda: None)
    await system.close()

LangGraph comes with the ``bench`` extra (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import importlib

from alto_stream.errors import ConfigError
from benchmarks.langgraph.system import LangGraphSystem, Parts, parts_for
from benchmarks.systems.base import BenchConfig, System

__all__ = ["APPS", "VARIANTS", "LangGraphSystem", "Parts", "make_system", "parts_for"]

VARIANTS = ("graph", "fused", "functional")
APPS = ("factcheck", "fanout", "rag", "cove")


def make_system(config: BenchConfig, variant: str, *, parts: Parts | None = None) -> System:
    """``config.app`` in LangGraph's ``variant``; ``parts`` (test doubles) default to real ones.

    Nothing loads until ``start()``.
    """
    if variant not in VARIANTS:
        raise ConfigError(f"unknown LangGraph variant {variant!r}: choose one of {VARIANTS}")
    if config.app not in APPS:
        raise ConfigError(f"unknown app {config.app!r}: choose one of {APPS}")
    try:
        app = importlib.import_module(f"benchmarks.langgraph.{config.app}")
    except ImportError as exc:  # langgraph itself is missing
        raise ConfigError(
            f"the LangGraph systems need the bench extra (pip install -e '.[bench]'): {exc}"
        ) from exc
    return LangGraphSystem(config, variant, app, parts=parts)
