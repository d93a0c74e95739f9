"""``alto-stream bench [latency|throughput|aggregate|floor|all|APP]``: the benchmarks.

``bench APP --system S`` (an AI app side by side with LangGraph) is in bench_apps.py.

The benchmark code lives in the repository's ``benchmarks/`` package, not in
the installed package: run the command from a checkout (its root is put on the
import path). Each benchmark runs ``--repeat`` times per delivery mode on
fresh topics; the table shows the median and the spread (min-max) of the runs.
"""

from __future__ import annotations

import cProfile
import enum
import importlib
import io
import os
import pstats
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer
from rich.table import Table

from alto_stream.cli._opsutil import (
    Bootstrap,
    JsonFlag,
    connect,
    emit_json,
    err,
    fail,
    handled,
    out,
)
from alto_stream.cli.bench_apps import app_name, csv_path, run_app_bench
from alto_stream.ops import eventloop

__all__ = ["Benchmark", "Where", "bench", "register"]


class Benchmark(enum.StrEnum):
    """Which benchmark to run."""

    LATENCY = "latency"
    THROUGHPUT = "throughput"
    AGGREGATE = "aggregate"
    FLOOR = "floor"
    LLM = "llm"
    EMBED = "embed"
    RETRIEVE = "retrieve"
    EMBED_SCALE = "embed-scale"
    ALL = "all"


class DeliveryChoice(enum.StrEnum):
    """The delivery modes to measure."""

    AT_LEAST_ONCE = "at-least-once"
    TRANSACTIONAL = "transactional"
    BOTH = "both"


class Handler(enum.StrEnum):
    """How the throughput benchmark's echo stage is written."""

    ASYNC = "async"
    PLAIN = "plain"


class Where(enum.StrEnum):
    """Where the workers run."""

    PROCESS = "process"
    IN_PROCESS = "in-process"


def bench(
    which: Annotated[
        str,
        typer.Argument(
            metavar="WHICH",
            help="latency, throughput, aggregate, floor, llm, embed, retrieve, embed-scale, all; "
            "or an app "
            "(factcheck, fanout, rag, cove, or workers.X:app) to run side by side (--system).",
        ),
    ] = "all",
    delivery: Annotated[
        DeliveryChoice, typer.Option("--delivery", help="Delivery mode(s) to measure.")
    ] = DeliveryChoice.BOTH,
    repeat: Annotated[int, typer.Option("--repeat", "-r", min=1, help="Runs of each.")] = 3,
    where: Annotated[
        Where, typer.Option("--where", help="Workers as processes or as tasks in this one.")
    ] = Where.PROCESS,
    queries: Annotated[
        int | None, typer.Option(min=1, help="Latency: queries pushed [300]; APP: queries [20].")
    ] = None,
    interval: Annotated[float, typer.Option(min=0.0, help="Latency: pause between.")] = 0.015,
    records: Annotated[int, typer.Option(min=2, help="Throughput: records.")] = 100_000,
    handler: Annotated[
        Handler, typer.Option("--handler", help="Throughput: the echo as async def or def.")
    ] = Handler.ASYNC,
    agg_queries: Annotated[int, typer.Option(min=1, help="Aggregate: queries.")] = 200,
    fanout: Annotated[int, typer.Option(min=1, help="Aggregate: children per query.")] = 100,
    profile: Annotated[
        Path | None,
        typer.Option(help="Profile this process with cProfile (use --where in-process)."),
    ] = None,
    sentences: Annotated[int, typer.Option(min=64, help="Embed: sentences per run.")] = 1000,
    index: Annotated[
        str | None, typer.Option(help="Retrieve: the index (default: the wiki index).")
    ] = None,
    system: Annotated[
        str,
        typer.Option(
            help="APP: alto, alto-admit<N>, or langgraph-<graph|fused|functional>[-sqlite]; "
            "each takes +gate: its LLM "
            "calls through `alto-stream gate` (oldest query first at a FIFO server)."
        ),
    ] = "alto",
    rate: Annotated[float, typer.Option(min=0.001, help="APP: Poisson arrivals per s.")] = 1.0,
    replicas: Annotated[
        list[str] | None, typer.Option("--replicas", help="APP, alto: STAGE=N workers.")
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            help="APP: the LLM server's URL, or llama-cpp to start llama_cpp.server with "
            "Gemma 3 270M [an emulated engine is started]."
        ),
    ] = None,
    engine_capacity: Annotated[
        int | None, typer.Option(min=1, help="APP: the emulated engine's running requests.")
    ] = None,
    engine_token_rate: Annotated[
        float | None, typer.Option(min=0.1, help="APP: the emulated engine's tokens/s.")
    ] = None,
    slo: Annotated[
        float | None, typer.Option(min=0.0, help="APP: latency target (s) for SLO attainment.")
    ] = None,
    csv: Annotated[str | None, typer.Option(help="APP: write per-query rows here.")] = None,
    seed: Annotated[
        int,
        typer.Option(help="APP: the seed of the arrivals and of every LLM call."),
    ] = 0,
    bound: Annotated[
        bool, typer.Option("--bound", help="APP: also measure the critical-path bound.")
    ] = False,
    admission: Annotated[
        int | None, typer.Option(min=1, help="APP, alto: queries in flight (when supported).")
    ] = None,
    keep_topics: Annotated[
        bool,
        typer.Option("--keep-topics", help="APP, alto: leave the run's topics (else deleted)."),
    ] = False,
    bootstrap: Bootstrap = None,
    as_json: JsonFlag = False,
) -> None:
    """Measure latency, throughput and split/aggregate throughput on a Kafka broker.

    APP (factcheck, fanout, rag, cove or workers.X:app): the app's queries on one
    system (``--system``), open-loop Poisson arrivals at ``--rate``; latency, first
    partial, throughput and SLO attainment (benchmarks/README.md). Without
    ``--engine`` an EMULATED GPU serving engine is started for the run.

    ``llm``: the LLM stage (llama.cpp) through Kafka against calling it directly
    (needs the llm extra; benchmarks/README.md).

    ``embed`` and ``retrieve``: the embedding stage (sentences/s through Kafka
    against direct model calls, at batch 1/8/32) and retrieval latency (needs the
    ml extra and, for retrieve, an index: alto-stream index build).
    """
    if app := app_name(which):
        run_app_bench(
            app,
            bootstrap=bootstrap,
            as_json=as_json,
            system=system,
            rate=rate,
            queries=queries or 20,
            replicas=replicas or [],
            engine_url=engine,
            engine_capacity=engine_capacity,
            engine_token_rate=engine_token_rate,
            slo_s=slo,
            csv=csv_path(csv),
            seed=seed,
            with_bound=bound,
            admission=admission,
            index_dir=index,
            keep_topics=keep_topics,
        )
        return
    try:
        chosen = Benchmark(which)
    except ValueError:
        fail(
            f"no benchmark or app {which!r}: one of {', '.join(b.value for b in Benchmark)}, "
            "or an app (factcheck, fanout, rag, cove, workers.X:app)"
        )
    queries = queries or 300
    if chosen is Benchmark.LLM:
        _bench_llm(bootstrap, as_json)
        return
    if chosen is Benchmark.EMBED_SCALE:
        _bench_embed_scale(bootstrap, as_json, sentences)
        return
    if chosen in (Benchmark.EMBED, Benchmark.RETRIEVE):
        extra = {"sentences": sentences} if chosen is Benchmark.EMBED else {"index": index}
        _bench_components(chosen, repeat, bootstrap, as_json, queries=queries, **extra)
        return
    runtime = _benchmarks()
    # "all": alto-stream's own three; the floor (a bare aiokafka echo) is asked for by name.
    everything = [Benchmark.LATENCY, Benchmark.THROUGHPUT, Benchmark.AGGREGATE]
    kinds = everything if chosen is Benchmark.ALL else [chosen]
    modes = (
        ["at-least-once", "transactional"] if delivery is DeliveryChoice.BOTH else [delivery.value]
    )
    options: dict[Benchmark, dict[str, Any]] = {
        Benchmark.LATENCY: {"queries": queries, "interval": interval},
        Benchmark.FLOOR: {"queries": queries, "interval": interval},
        Benchmark.THROUGHPUT: {"records": records, "handler": handler.value},
        Benchmark.AGGREGATE: {"queries": agg_queries, "fanout": fanout},
    }
    with handled():
        transport = connect(bootstrap)

        async def run_all() -> list[dict[str, Any]]:
            reports = []
            for kind in kinds:
                measure = getattr(runtime, kind.value)
                # The bare echo of the floor has one mode: it is measured once.
                for mode in ["at-least-once"] if kind is Benchmark.FLOOR else modes:
                    err.print(f"{kind.value} ({mode}, {where.value}) x{repeat} ...")
                    results = await runtime.repeat(
                        repeat,
                        lambda m=measure, d=mode, k=kind: m(
                            transport, d, where=where.value, **options[k]
                        ),
                    )
                    reports.append({"benchmark": kind.value, "summary": runtime.summary(results)})
            return reports

        profiler = cProfile.Profile() if profile is not None else None
        if profiler is not None:
            profiler.enable()
        reports = eventloop.run(run_all())
        if profiler is not None and profile is not None:
            profiler.disable()
            profiler.dump_stats(profile)
            _print_profile(profiler)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "loadavg": list(os.getloadavg())}
    if as_json:
        emit_json({**meta, "results": [_jsonable(r) for r in reports]})
        return
    out.print(f"{meta['date']}, load average {' '.join(f'{x:.2f}' for x in meta['loadavg'])}")
    for report in reports:
        out.print(_table(report))


def _bench_llm(bootstrap: str | None, as_json: bool) -> None:
    _benchmarks()  # puts the checkout on the import path
    llm_bench = importlib.import_module("benchmarks.llm")
    with handled():
        transport = connect(bootstrap)
        result = eventloop.run(llm_bench.run(transport))
    figures = {**vars(result), "loadavg": list(os.getloadavg())}
    if as_json:
        emit_json(figures)
        return
    table = Table(title="llm: llama.cpp through Kafka vs direct", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in figures.items():
        if name != "per_question":  # in --json only
            table.add_row(name, f"{value:,.3f}" if isinstance(value, float) else str(value))
    out.print(table)


def _bench_embed_scale(bootstrap: str | None, as_json: bool, sentences: int) -> None:
    """The embedding stage with 1, 2, 4 worker processes against one event loop."""
    _benchmarks()  # puts the checkout on the import path
    scale = importlib.import_module("benchmarks.embed_scale").scale
    with handled():
        transport = connect(bootstrap)
        figures = eventloop.run(
            scale(transport.bootstrap, processes=[1, 2, 4], sentences=sentences, batch=32)
        )
    if as_json:
        emit_json(figures)
        return
    table = Table(title="embed-scale: sentences/s", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in figures.items():
        table.add_row(name, f"{value:,.1f}" if isinstance(value, float) else str(value))
    out.print(table)


def _bench_components(
    which: Benchmark, repeat: int, bootstrap: str | None, as_json: bool, **options: Any
) -> None:
    """``benchmarks.components``: the embedding stage or retrieval (at-least-once)."""
    runtime = _benchmarks()  # also puts the checkout on the import path
    measure = getattr(importlib.import_module("benchmarks.components"), which.value)
    if which is Benchmark.EMBED:
        options.pop("queries")
    with handled():
        transport = connect(bootstrap)
        results = eventloop.run(
            runtime.repeat(repeat, lambda: measure(transport, "at-least-once", **options))
        )
    report = {"benchmark": which.value, "summary": runtime.summary(results)}
    if as_json:
        emit_json(_jsonable(report))
    else:
        out.print(_table(report))


def _benchmarks() -> ModuleType:
    """``benchmarks.runtime`` from the checkout in the current directory."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module("benchmarks.runtime")
    except ImportError as exc:
        fail(
            f"the benchmarks live in the alto-stream repository, not in the installed "
            f"package ({exc}); fix: run `alto-stream bench` from the root of a checkout"
        )


def _table(report: dict[str, Any]) -> Table:
    summary = report["summary"]
    title = f"{report['benchmark']}: {summary['delivery']}, workers {summary['where']}"
    table = Table(title=title, title_justify="left")
    for column in ("figure", "median", "min", "max"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    for name, value in summary.items():
        if hasattr(value, "median"):
            table.add_row(name, *(f"{x:,.2f}" for x in (value.median, value.low, value.high)))
        elif name not in ("delivery", "where"):
            table.add_row(name, str(value), "", "")
    return table


def _jsonable(report: dict[str, Any]) -> dict[str, Any]:
    figures = {
        name: value.as_dict() if hasattr(value, "as_dict") else value
        for name, value in report["summary"].items()
    }
    return {"benchmark": report["benchmark"], **figures}


def _print_profile(profiler: cProfile.Profile) -> None:
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer).strip_dirs()
    stats.sort_stats("tottime").print_stats(25)
    err.print(buffer.getvalue())


def register(root: typer.Typer) -> None:
    """Add ``bench`` to the root command."""
    root.command("bench")(bench)
