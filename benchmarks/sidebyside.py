"""One side-by-side run: the engine, the system, the load, the summary (and the bound).

What ``alto-stream bench APP --system S ...`` runs (alto_stream/cli/bench_apps.py) and
what the sweep (benchmarks/sweep.py) builds on: :func:`engine` starts the EMULATED
engine unless a URL is given, :func:`load` runs one open-loop load on a started system,
:func:`bound` measures the app's critical-path bound against the same engine.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks import appbench
from benchmarks.systems import EngineOptions, EngineProcess, resolve
from benchmarks.systems.base import BenchConfig, System

__all__ = ["LLAMA", "BenchOptions", "Engine", "bound", "engine", "load", "run"]

LLAMA = "llama-cpp"
"""``--engine llama-cpp``: start ``llama_cpp.server`` with the packaged Gemma 3 270M."""


@dataclass(frozen=True)
class BenchOptions:
    """Everything one ``bench APP`` run needs."""

    app: str
    system: str = "alto"
    rate: float = 1.0
    queries: int = 20
    seed: int = 0
    slo_s: float | None = None
    replicas: dict[str, int] = field(default_factory=dict)
    admission: int | None = None
    engine_url: str | None = None
    engine: EngineOptions = field(default_factory=EngineOptions)
    priority: bool = True
    index_dir: str | None = None
    bootstrap: str | None = None
    csv: Path | None = None
    with_bound: bool = False
    timeout_s: float = 600.0
    workdir: str = ".alto/bench"
    gate_slots: int | None = None  # <system>+gate: the gate's slots (None: the engine's)
    keep_topics: bool = False  # alto: leave the run's topics on the broker


@dataclass(frozen=True)
class Engine:
    """The LLM server of a run: its URL, what it is ("emulated", or the URL), its settings."""

    url: str
    label: str
    config: dict[str, Any]


@contextlib.asynccontextmanager
async def engine(options: BenchOptions) -> AsyncIterator[Engine]:
    """The engine at ``options.engine_url``, or the EMULATED one started for the run.

    ``llama-cpp`` for the URL starts ``llama_cpp.server`` (the real model, CPU) instead.
    """
    if options.engine_url == LLAMA:
        Path(options.workdir).mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
        log = Path(options.workdir) / "llama-server.log"
        async with EngineProcess(log=log, llama=True) as proc:
            settings = {"server": "llama_cpp.server", "model": "Gemma 3 270M Q4_K_M (GGUF)",
                        "n_ctx": 2048, "requests_at_once": 1, "device": "cpu"}  # fmt: skip
            yield Engine(proc.url, "llama.cpp server, Gemma 3 270M Q4_K_M on the CPU", settings)
        return
    if options.engine_url:
        label, config = _describe(options.engine_url)
        yield Engine(options.engine_url, label, config)
        return
    Path(options.workdir).mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
    async with EngineProcess(options.engine, log=Path(options.workdir) / "engine.log") as proc:
        settings = proc.stats().get("config")
        yield Engine(proc.url, "emulated", settings if isinstance(settings, dict) else {})


def _describe(url: str) -> tuple[str, dict[str, Any]]:
    """("emulated", its config) for benchmarks/engine (it says so), else (the URL, {})."""
    try:
        with urllib.request.urlopen(url.removesuffix("/v1") + "/stats", timeout=3.0) as r:
            stats = json.loads(r.read())
        if "emulated" in str(stats.get("engine", "")):
            return "emulated", dict(stats.get("config") or {})
    except (OSError, ValueError):
        pass
    return url, {}


def with_gate_slots(options: BenchOptions, llm: Engine) -> BenchOptions:
    """``options`` with the gate's slots: as given, else the engine's capacity, else 1."""
    if options.gate_slots is not None:
        return options
    capacity = llm.config.get("capacity")
    return replace(options, gate_slots=int(capacity) if isinstance(capacity, int) else 1)


def config_for(options: BenchOptions, url: str) -> BenchConfig:
    """The :class:`BenchConfig` every system of the run shares."""
    return BenchConfig(
        app=options.app,
        llm_backend="openai",
        llm_url=url,
        priority=options.priority,
        llm_seed=options.seed,
        index_dir=options.index_dir or os.environ.get("ALTO_INDEX_DIR"),
        replicas=dict(options.replicas),
        admission=options.admission,
        workdir=options.workdir,
        gate_slots=options.gate_slots or 1,
        keep_topics=options.keep_topics,
    )


async def load(
    system: System,
    options: BenchOptions,
    *,
    rate: float,
    queries: int,
    slo_s: float | None,
    label: str,
    run_id: str,
) -> tuple[dict[str, Any], list[appbench.Row]]:
    """One open-loop load of ``queries`` at ``rate``/s on a started system: summary, rows."""
    texts = appbench.questions(options.app, queries)
    times = appbench.arrivals(rate, queries, options.seed)
    rows, wall = await appbench.drive(
        system, texts, times, run_id=run_id, timeout=options.timeout_s
    )
    summary = appbench.summarize(
        rows, system=system.name, app=options.app, rate=rate, slo_s=slo_s, engine=label
    )
    summary["wall_s"] = wall
    summary["loadavg"] = list(os.getloadavg())
    return summary, rows


async def bound(
    app: str, url: str, index_dir: str | None, questions: int = 2, seed: int | None = 0
) -> dict[str, Any]:
    """The app's critical-path bound (benchmarks/bound.py) against the LLM at ``url``.

    ``seed``: every LLM call's, as the systems' (the same prompts get the same answers).
    """
    from alto_stream.components.index import Retriever
    from alto_stream.components.llm import LLMConfig, create_llm
    from benchmarks.bound import measure_many
    from workers.common import index_dir as default_index

    llm = create_llm(LLMConfig(backend="openai", url=url, seed=seed))
    search = Retriever(index_dir or default_index(), k=3)
    try:
        return await measure_many(app, llm, search, appbench.questions(app, questions))
    finally:
        await llm.close()


async def run(options: BenchOptions) -> dict[str, Any]:
    """A whole ``bench APP`` run: the summary (with the bound when asked)."""
    factory = resolve(options.system)
    async with engine(options) as llm:
        config = config_for(with_gate_slots(options, llm), llm.url)
        system = factory(config, options.bootstrap)
        try:
            await system.start()  # inside: a start that fails still stops what it started
            await appbench.warm_up(system)
            run_id = f"{options.app}-{os.getpid()}"
            summary, rows = await load(
                system,
                options,
                rate=options.rate,
                queries=options.queries,
                slo_s=options.slo_s,
                label=llm.label,
                run_id=run_id,
            )
        finally:
            await system.close()
        summary["engine_config"] = llm.config
        if options.csv is not None:
            appbench.write_csv(
                rows,
                options.csv,
                system=system.name,
                app=options.app,
                rate=options.rate,
                engine=llm.label,
            )
        if options.with_bound:
            found = await bound(options.app, llm.url, config.index_dir, seed=options.seed)
            summary["bound_s"] = found["bound_s"]
            summary["first_partial_bound_s"] = found["first_partial_bound_s"]
            p50 = summary.get("p50_s")
            summary["latency_low_load_x_bound"] = p50 / found["bound_s"] if p50 else None
            summary["direct_s"] = found["direct_s"]
            summary["latency_low_load_x_direct"] = p50 / found["direct_s"] if p50 else None
            summary["bound"] = found
    return summary
