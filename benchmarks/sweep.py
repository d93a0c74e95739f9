"""The sweep: every app on every system over offered load, with plots and a results table.

``python -m benchmarks.sweep --apps rag,fanout --systems alto,langgraph-graph
--loads 0.5,0.9,1.2 --queries 40 --out .alto/sweep/NAME`` (``--out`` is required;
its arguments are checked first: benchmarks/sweep_args.py)

One EMULATED engine (benchmarks/engine) serves the whole sweep. For each app:

1. the critical-path bound (benchmarks/bound.py), which also counts the app's LLM calls
   and tokens per query;
2. the engine's capacity in queries/s for the app, from the engine's settings and those
   counts: at a full batch (``capacity`` requests running) a request's tokens come every
   ``(1 + slowdown) / token_rate`` seconds, so one query holds the engine for
   ``calls * first_token + tokens * (1 + slowdown) / token_rate`` request-seconds and
   the engine serves ``capacity`` divided by that many queries per second
   (:func:`capacity_qps`); a load of 0.9 is 90% of it. With a real server (``--engine
   URL``): ``--engine-concurrency`` (1 for llama_cpp.server) over the LLM seconds of a
   query measured with the bound;
3. for each system (started once): a low load first (``--low-queries`` queries, one
   per ``--low-gap`` (2) bounds on average, so that they seldom overlap, and no more than
   ``--low-load`` (25%) of capacity), then each offered load (``--queries`` queries);
   ``alto-admit`` runs with the app's ``--admission APP=N``, or else
   :func:`admission_for` its capacity and bound;
4. the app's SLO: 1.5 times the lowest low-load p99 of the systems (one target for all
   of them); each run's SLO attainment is computed against it afterwards, and the
   throughput at the SLO is the highest throughput among the loads where at least 90% of
   the queries met it.

Writes to ``--out``: ``sweep.json`` (every summary, bound, capacity, SLO), ``rows.csv``
(every query), ``<app>-latency.png`` (p50 and p99 against load), ``<app>-cdf.png``
(latency CDF at ``--cdf-load``), ``throughput-at-slo.png`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks import appbench, sweep_args
from benchmarks.sidebyside import BenchOptions, bound, config_for, engine, load
from benchmarks.sweep_files import merge, read, write
from benchmarks.systems import EngineOptions, make_system, resolve
from benchmarks.systems.process import stop_on_sigterm

__all__ = [
    "admission_for",
    "capacity_for",
    "capacity_qps",
    "main",
    "slo_for",
    "sweep",
    "throughput_at_slo",
]

ATTAINMENT = 0.9
"""The share of queries that must meet the SLO for a load to count as served at the SLO."""


def capacity_qps(engine_config: dict[str, Any], calls: float, tokens: float) -> float:
    """Queries/s the emulated engine serves at a full batch, for ``calls`` and ``tokens``/query.

    >>> round(capacity_qps({"capacity": 32, "first_token": 0.05, "token_rate": 60.0,
    ...                     "slowdown": 1.0}, calls=1, tokens=90), 3)
    10.492
    """
    per_token = (1.0 + float(engine_config["slowdown"])) / float(engine_config["token_rate"])
    seconds = calls * float(engine_config["first_token"]) + tokens * per_token
    return float(engine_config["capacity"]) / seconds


def capacity_for(engine_config: dict[str, Any], bound: dict[str, Any], concurrency: int) -> float:
    """The engine's capacity in queries/s for an app whose bound measured ``bound``.

    The emulated engine's from its settings (:func:`capacity_qps`); a real server's
    (no settings known): the requests it serves at once over a query's LLM seconds.

    >>> capacity_for({}, {"llm_seconds_per_query": 4.0}, 1)
    0.25
    """
    if "capacity" in engine_config:
        calls, tokens = bound["llm_calls_per_query"], bound["llm_tokens_per_query"]
        return capacity_qps(engine_config, calls, tokens)
    return concurrency / float(bound["llm_seconds_per_query"])


def slo_for(low_p99s: list[float]) -> float | None:
    """1.5 times the lowest low-load p99 of the systems (None when none completed)."""
    return 1.5 * min(low_p99s) if low_p99s else None


def throughput_at_slo(summaries: list[dict[str, Any]]) -> float:
    """The highest throughput among the runs where at least :data:`ATTAINMENT` met the SLO."""
    met = [
        s["throughput_qps"] or 0.0
        for s in summaries
        if s.get("slo_attainment") is not None and s["slo_attainment"] >= ATTAINMENT
    ]
    return max(met, default=0.0)


async def _system_runs(
    name: str,
    options: BenchOptions,
    url: str,
    label: str,
    rates: dict[str, float],
    low_rate: float,
    low_queries: int,
) -> tuple[dict[str, Any], dict[str, list[appbench.Row]]]:
    """One system on one app: the low-load run, then each load. Summaries, rows by load."""
    system = make_system(name, config_for(options, url), bootstrap=options.bootstrap)
    summaries: dict[str, Any] = {}
    rows: dict[str, list[appbench.Row]] = {}
    try:
        await system.start()  # inside: a start that fails still stops what it started
        await appbench.warm_up(system)
        for load_name, rate, count in [("low", low_rate, low_queries)] + [
            (key, value, options.queries) for key, value in rates.items()
        ]:
            print(
                f"sweep: {options.app} {name} load {load_name} ({rate:.3f} q/s, {count} queries)",
                flush=True,
            )
            summary, found = await load(
                system,
                options,
                rate=rate,
                queries=count,
                slo_s=None,
                label=label,
                run_id=f"{options.app}-{load_name}-{int(time.time())}",
            )
            summaries[load_name], rows[load_name] = summary, found
    finally:
        await system.close()
    return summaries, rows


def admission_for(capacity: float, bound_s: float) -> int:
    """The admission limit of ``alto-admit`` when none is given: Little's law.

    The queries in flight that keep the engine at its capacity when each takes 1.5
    times its bound on average: ``capacity * 1.5 * bound``. With twice the bound (the
    issue's target for the p99 of admitted queries) as the average, the p99 went past
    it: fanout's limit of 6 gave 2.34x at 120% of capacity, 4 gives 1.75x, at 94% of
    the throughput (docs/sidebyside.md, "Choosing the admission limit").

    >>> admission_for(2.6, 1.8)
    7
    """
    return max(1, round(capacity * 1.5 * bound_s))


async def sweep(
    options: BenchOptions,
    *,
    replicas: dict[str, dict[str, int]],
    admission: dict[str, int] | None = None,
    apps: list[str],
    systems: list[str],
    loads: list[float],
    low_load: float,
    low_queries: int,
    bound_questions: int = 2,
    low_gap: float = 2.0,
    engine_concurrency: int = 1,
) -> dict[str, Any]:
    """Every app, system and load (module docstring); the whole result, rows included."""
    admission = admission or {}
    for name in systems:
        resolve(name)  # a bad or missing system fails now, not after the first app
    result: dict[str, Any] = {
        "apps": {},
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "loads": loads,
        "systems": systems,
    }
    async with engine(options) as llm:
        result["engine"], result["engine_config"] = llm.label, llm.config
        # <system>+gate: as many slots as the engine serves requests at once.
        gate_slots = options.gate_slots or int(llm.config.get("capacity") or engine_concurrency)
        for app in apps:
            app_options = replace(
                options, app=app, replicas=replicas.get(app, {}), gate_slots=gate_slots
            )
            print(f"sweep: {app}: measuring the critical-path bound", flush=True)
            index = config_for(app_options, llm.url).index_dir
            found = await bound(app, llm.url, index, questions=bound_questions, seed=options.seed)
            capacity = capacity_for(llm.config, found, engine_concurrency)
            limit = admission.get(app) or admission_for(capacity, found["bound_s"])
            rates = {f"{x:g}": x * capacity for x in loads}
            low_rate = min(low_load * capacity, 1.0 / (low_gap * found["bound_s"]))
            entry: dict[str, Any] = {
                "bound": found,
                "capacity_qps": capacity,
                "admission": limit,
                "systems": {},
            }
            for name in systems:
                # alto-admit (no number) takes the app's limit; the others keep theirs.
                admitted = replace(app_options, admission=limit if name == "alto-admit" else None)
                summaries, rows = await _system_runs(
                    name, admitted, llm.url, llm.label, rates, low_rate, low_queries
                )
                entry["systems"][name] = {"summaries": summaries, "rows": rows}
            _apply_slo(entry, app, found["bound_s"])
            result["apps"][app] = entry
    return result


def _apply_slo(entry: dict[str, Any], app: str, bound_s: float) -> None:
    """The app's SLO, then every run's attainment against it and each system's figures."""
    lows = [
        s["summaries"]["low"]["p99_s"]
        for s in entry["systems"].values()
        if s["summaries"]["low"]["p99_s"] is not None
    ]
    entry["slo_s"] = slo = slo_for(lows)
    for name, system in entry["systems"].items():
        for load_name, rows in system["rows"].items():
            old = system["summaries"][load_name]
            new = appbench.summarize(
                rows, system=name, app=app, rate=old["rate"], slo_s=slo, engine=old["engine"]
            )
            system["summaries"][load_name] = {**old, **new, "date": old["date"]}
        low = system["summaries"]["low"]
        system["low_load_p50_x_bound"] = low["p50_s"] / bound_s if low["p50_s"] else None
        system["low_load_p99_x_bound"] = low["p99_s"] / bound_s if low["p99_s"] else None
        direct_s = entry["bound"].get("direct_s")  # sweeps before 2026-12-01 lack it
        system["low_load_p50_x_direct"] = (
            low["p50_s"] / direct_s if low["p50_s"] and direct_s else None
        )
        loaded = [v for k, v in system["summaries"].items() if k != "low"]
        system["throughput_at_slo_qps"] = throughput_at_slo(loaded)


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.sweep``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--apps", default="rag,fanout,factcheck,cove")
    parser.add_argument(
        "--systems", default="alto,langgraph-graph,langgraph-fused,langgraph-functional"
    )
    parser.add_argument("--loads", default="0.5,0.9,1.2", help="fractions of the engine's capacity")
    parser.add_argument("--queries", type=int, default=40, help="queries per load")
    parser.add_argument(
        "--low-load", type=float, default=0.25, help="the low load's upper limit (fraction)"
    )
    parser.add_argument(
        "--low-gap",
        type=float,
        default=2.0,
        help="at low load, queries come at most every this many bounds (mean)",
    )
    parser.add_argument("--low-queries", type=int, default=8)
    parser.add_argument(
        "--bound-questions",
        type=int,
        default=2,
        help="questions the bound is the median of (factcheck: ~3 min each)",
    )
    parser.add_argument("--cdf-load", default="0.9")
    parser.add_argument("--engine-capacity", type=int, default=None)
    parser.add_argument("--engine-token-rate", type=float, default=None)
    parser.add_argument("--engine-slowdown", type=float, default=None)
    parser.add_argument(
        "--engine-fifo",
        action="store_true",
        help="the emulated engine ignores priority: arrival order, as llama_cpp.server",
    )
    parser.add_argument("--engine", default=None, help="an LLM server's URL [emulated, started]")
    parser.add_argument(
        "--engine-concurrency",
        type=int,
        default=1,
        help="with --engine: the requests it serves at once (llama_cpp.server: 1), for capacity",
    )
    parser.add_argument("--replicas", action="append", default=[], help="alto: APP:STAGE=N")
    parser.add_argument(
        "--admission",
        action="append",
        default=[],
        help="alto-admit: APP=N, the app's admission limit (queries in flight)",
    )
    parser.add_argument(
        "--bootstrap", default=os.environ.get("ALTO_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per query")
    parser.add_argument(
        "--out",
        required=True,
        help="the folder to write (e.g. .alto/sweep/NAME; docs/bench holds the committed results)",
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="DIR",
        help="write the sweeps in DIR... as one to --out (a later one's apps win)",
    )
    args = parser.parse_args(argv)
    try:
        if args.merge:
            sweep_args.check_merge(args.merge)
            merged = merge([read(Path(folder)) for folder in args.merge])
            cdf_load = sweep_args.cdf_key(args.cdf_load, merged["loads"])
        else:
            sweep_args.check(args)
            cdf_load = sweep_args.cdf_key(args.cdf_load, sweep_args.loads(args.loads))
    except sweep_args.RefusedError as exc:
        print(f"sweep: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.merge:
        write(merged, Path(args.out), cdf_load)
        print(f"sweep: merged {', '.join(args.merge)} into {args.out}/results.md", flush=True)
        return
    options = BenchOptions(
        app="",
        queries=args.queries,
        seed=args.seed,
        engine_url=args.engine,
        engine=EngineOptions(
            capacity=args.engine_capacity,
            token_rate=args.engine_token_rate,
            slowdown=args.engine_slowdown,
            fifo=args.engine_fifo or None,
        ),
        bootstrap=args.bootstrap,
        timeout_s=args.timeout,
    )
    replicas = sweep_args.replicas(args.replicas)  # checked above, with the stages
    began = time.monotonic()
    with stop_on_sigterm():  # SIGTERM as Ctrl-C: every process started is stopped
        result = asyncio.run(
            sweep(
                options,
                replicas=replicas,
                admission=sweep_args.admission(args.admission),
                apps=args.apps.split(","),
                systems=args.systems.split(","),
                loads=sweep_args.loads(args.loads),
                low_load=args.low_load,
                low_queries=args.low_queries,
                bound_questions=args.bound_questions,
                low_gap=args.low_gap,
                engine_concurrency=args.engine_concurrency,
            )
        )
    result["wall_s"] = time.monotonic() - began
    result["command"] = "python -m benchmarks.sweep " + " ".join(argv or sys.argv[1:])
    write(result, Path(args.out), cdf_load)
    print(f"sweep: done in {result['wall_s']:.0f} s; wrote {args.out}/results.md", flush=True)


if __name__ == "__main__":
    main()
