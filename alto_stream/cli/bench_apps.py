"""``alto-stream bench APP --system S``: one AI app side by side with other orchestrators.

APP is an app name (factcheck, fanout, rag, cove) or a reference ``workers.X:app``.
The code lives in the checkout's ``benchmarks/`` (benchmarks/sidebyside.py): the
command runs from the root of a checkout. Without ``--engine URL`` the EMULATED GPU
serving engine (benchmarks/engine) is started on a free port and stopped after; every
output says when the engine is emulated.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any

from rich.table import Table

from alto_stream.cli._opsutil import connect, emit_json, err, fail, handled, out
from alto_stream.errors import ConfigError
from alto_stream.ops import eventloop

__all__ = ["APPS", "app_name", "run_app_bench"]

APPS = ("factcheck", "fanout", "rag", "cove")
_REF = re.compile(r"^workers\.(?P<app>\w+):app$")


def app_name(which: str) -> str | None:
    """The app a bench argument names (``rag`` or ``workers.rag:app``), None if none.

    >>> app_name("workers.cove:app"), app_name("rag"), app_name("latency")
    ('cove', 'rag', None)
    """
    match = _REF.match(which)
    name = match.group("app") if match else which
    return name if name in APPS else None


def parse_stage_counts(items: list[str]) -> dict[str, int]:
    """``STAGE=N`` items as a dict (``--replicas score=2``)."""
    counts: dict[str, int] = {}
    for item in items:
        stage, sep, number = item.partition("=")
        if not sep or not stage or not number.isdigit() or int(number) < 1:
            raise ConfigError(f"bad --replicas {item!r}: use STAGE=N with N >= 1")
        counts[stage] = int(number)
    return counts


def run_app_bench(app: str, *, bootstrap: str | None, as_json: bool, **options: Any) -> None:
    """Run ``benchmarks.sidebyside`` for ``app`` and print its summary (or JSON)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        sidebyside = importlib.import_module("benchmarks.sidebyside")
        systems = importlib.import_module("benchmarks.systems")
    except ImportError as exc:
        fail(
            f"the benchmarks live in the alto-stream repository, not in the installed "
            f"package ({exc}); fix: run `alto-stream bench` from the root of a checkout"
        )
    with handled():
        replicas = parse_stage_counts(options.pop("replicas"))
        engine = systems.EngineOptions(
            capacity=options.pop("engine_capacity"), token_rate=options.pop("engine_token_rate")
        )
        system = options["system"]
        stages = _stages(app) if replicas else []
        systems.check_options(
            system, admission=options["admission"], replicas=replicas, stages=stages
        )
        # alto, alto-admitN, alto-admit (+gate): the workers need the broker (default, or -b).
        needs_kafka = systems.parse_system(system)[0] == "alto"
        server = connect(bootstrap).bootstrap if needs_kafka else bootstrap
        settings = sidebyside.BenchOptions(
            app=app, replicas=replicas, engine=engine, bootstrap=server, **options
        )
        # SIGTERM as Ctrl-C: the run stops the engine, gate and workers it started.
        with importlib.import_module("benchmarks.systems.process").stop_on_sigterm():
            summary = eventloop.run(sidebyside.run(settings))
    if as_json:
        emit_json(summary)
    else:
        _print_summary(app, summary)
    _check_completed(summary)


def _check_completed(summary: dict[str, Any]) -> None:
    """Exit 1 when no query completed; say on stderr how many failed when some did."""
    failed, sent = summary.get("failed") or 0, summary.get("queries") or 0
    why = summary.get("first_error") or "no answer within the time-out"
    if sent and failed >= sent:
        fail(f"no query completed ({failed} of {sent} failed); the first error: {why}", 1)
    if failed:
        err.print(
            f"warning: {failed} of {sent} queries failed; the first error: {why}",
            style="yellow",
            markup=False,
        )


def _print_summary(app: str, summary: dict[str, Any]) -> None:
    """The summary as a table (stdout); the emulated engine named on stderr."""
    if summary["engine"] == "emulated":
        err.print("[yellow]engine: EMULATED GPU serving engine (benchmarks/engine), not a model")
    table = Table(title=f"bench {app}: {summary['system']}", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in summary.items():
        if name not in ("bound", "engine_config"):
            shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
            table.add_row(name, shown)
    out.print(table)


def _stages(app: str) -> list[str]:
    """The stage names of ``app`` (for checking ``--replicas`` before anything starts)."""
    from alto_stream.ops.loading import load_topology

    _, topology = load_topology(f"workers.{app}:app")
    return list(topology.stages)


def csv_path(value: str | None) -> Path | None:
    """The ``--csv`` file, if any."""
    return Path(value) if value else None
