"""The sweep's arguments checked before anything starts: one line and exit status 2 if bad.

A sweep runs for minutes to hours; an argument it cannot use (an unknown app or
system, a load of 0, a ``--cdf-load`` it does not run, a missing index, a
``--merge`` folder that holds no sweep) must stop it at once, not after the
first bound, with a traceback.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alto_stream.errors import AltoError
from benchmarks import appbench

__all__ = ["RefusedError", "admission", "cdf_key", "check", "check_merge", "loads", "replicas"]


class RefusedError(Exception):
    """An argument the sweep cannot use; the message says which and why."""


def loads(text: str) -> list[float]:
    """``--loads 0.5,0.9``: fractions of capacity, each > 0."""
    try:
        found = [float(x) for x in text.split(",")]
    except ValueError:
        raise RefusedError(
            f"bad --loads {text!r}: use fractions of capacity, e.g. 0.5,0.9,1.2"
        ) from None
    if not all(x > 0 for x in found):
        raise RefusedError(f"bad --loads {text!r}: every load must be > 0")
    return found


def replicas(
    items: list[str], stages: dict[str, list[str]] | None = None
) -> dict[str, dict[str, int]]:
    """``APP:STAGE=N`` items as {app: {stage: N}}; with ``stages`` ({app: its stages}) the
    app must be one of them and the stage its own."""
    found: dict[str, dict[str, int]] = {}
    for item in items:
        where, _, number = item.partition("=")
        app, _, stage = where.partition(":")
        if not (app and stage and number.isdigit() and int(number) > 0):
            raise RefusedError(f"bad --replicas {item!r}: use APP:STAGE=N, e.g. rag:score=2")
        if stages is None:
            pass
        elif app not in stages:
            raise RefusedError(f"bad --replicas {item!r}: {app!r} is not among --apps")
        elif stage not in stages[app]:
            raise RefusedError(
                f"no stage {stage!r} in {app}; the stages are {', '.join(stages[app])}"
            )
        found.setdefault(app, {})[stage] = int(number)
    return found


def admission(items: list[str]) -> dict[str, int]:
    """``APP=N`` items as {app: N}."""
    found: dict[str, int] = {}
    for item in items:
        app, _, number = item.partition("=")
        if not (app and number.isdigit() and int(number) > 0):
            raise RefusedError(f"bad --admission {item!r}: use APP=N, e.g. fanout=3")
        found[app] = int(number)
    return found


def cdf_key(cdf_load: str, swept: list[float]) -> str:
    """The ``--cdf-load`` as the key of one of the loads (refused if not among them)."""
    try:
        wanted = float(cdf_load)
    except ValueError:
        raise RefusedError(f"bad --cdf-load {cdf_load!r}: use one of the loads") from None
    if wanted not in swept:
        shown = ",".join(f"{x:g}" for x in swept)
        raise RefusedError(
            f"--cdf-load {cdf_load} is not among the loads ({shown}): its CDF is empty"
        )
    return f"{wanted:g}"


def _positive(args: argparse.Namespace) -> None:
    for flag, value, least in (
        ("--queries", args.queries, 1),
        ("--low-queries", args.low_queries, 1),
        ("--bound-questions", args.bound_questions, 1),
        ("--engine-concurrency", args.engine_concurrency, 1),
        ("--engine-capacity", args.engine_capacity, 1),
    ):
        if value is not None and value < least:
            raise RefusedError(f"bad {flag} {value}: at least {least}")
    for flag, number in (
        ("--low-load", args.low_load),
        ("--low-gap", args.low_gap),
        ("--timeout", args.timeout),
        ("--engine-token-rate", args.engine_token_rate),
    ):
        if number is not None and not number > 0:
            raise RefusedError(f"bad {flag} {number}: must be > 0")
    if args.engine_slowdown is not None and not args.engine_slowdown >= 0:
        raise RefusedError(f"bad --engine-slowdown {args.engine_slowdown}: must be >= 0")


def _index() -> None:
    """The index the bound and the workers search (``ALTO_INDEX_DIR`` or the default) exists."""
    from alto_stream.components.index import Manifest
    from workers.common import index_dir

    try:
        Manifest.read(index_dir())
    except AltoError as exc:
        raise RefusedError(str(exc)) from None


def stages_of(app: str) -> list[str]:
    """The stage names of ``app``."""
    from alto_stream.ops.loading import load_topology

    _, topology = load_topology(f"workers.{app}:app")
    return list(topology.stages)


def check(args: argparse.Namespace) -> None:
    """Every argument of a sweep (not a ``--merge``), or :class:`RefusedError`."""
    from benchmarks.systems import resolve

    apps = args.apps.split(",")
    for app in apps:
        if app not in appbench.APPS:
            raise RefusedError(f"no app {app!r}; the apps are {', '.join(appbench.APPS)}")
    for name in args.systems.split(","):
        try:
            resolve(name)
        except AltoError as exc:
            raise RefusedError(str(exc)) from None
    cdf_key(args.cdf_load, loads(args.loads))
    _positive(args)
    replicas(args.replicas, {app: stages_of(app) for app in apps} if args.replicas else {})
    admission(args.admission)
    _index()


def check_merge(folders: list[str]) -> None:
    """Each ``--merge`` folder holds a sweep (``sweep.json`` and ``rows.csv``)."""
    for folder in folders:
        for name in ("sweep.json", "rows.csv"):
            if not (Path(folder) / name).is_file():
                raise RefusedError(f"--merge {folder}: no {name} there (not a sweep's --out)")
