"""Run one stage's worker in this process: topics checked, signals, metrics, stats.

SIGTERM or SIGINT asks the worker to stop gracefully (in-flight records finish,
offsets are committed); a second one cuts the records in flight short at once
(their next owner runs them again) and the stop goes on (what is done is
committed, the group is left); a third ends the process at once (exit 130,
nothing more committed). Under a supervisor
(``ALTO_PARENT_PID`` set) the worker also stops when its parent is gone, so no
orphan keeps consuming.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shlex
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alto_stream import resources
from alto_stream.app import App
from alto_stream.errors import ConfigError, TransportError
from alto_stream.ops import logs
from alto_stream.ops.loading import keep_schema_versions
from alto_stream.ops.metrics import WorkerMetrics, report_loop, serve
from alto_stream.ops.topics import missing_topics
from alto_stream.runtime.kafka import KafkaOps, KafkaTransport, is_fencing
from alto_stream.runtime.worker import DeliveryMode, Worker, WorkerOptions, WorkerStats
from alto_stream.settings import env_limits
from alto_stream.transport import Partition

__all__ = [
    "ADMISSION_ENV",
    "PARENT_PID_ENV",
    "WorkerSetup",
    "escalating",
    "replica_label",
    "run_worker",
]

log = logging.getLogger(__name__)

PARENT_PID_ENV = "ALTO_PARENT_PID"
"""Set by a supervisor: the worker stops when this process is no longer its parent."""


@dataclass(frozen=True)
class WorkerSetup:
    """How to run one worker process (durations in seconds)."""

    stage: str
    delivery: DeliveryMode = "at-least-once"
    replica: str | None = None
    """This worker's label among its stage's (None: ``pid<process id>``, unique per process)."""
    app_ref: str | None = None
    """How the app was named on the command line (for the hints in errors)."""
    metrics_port: int | None = None
    stats_file: Path | None = None
    check_topics: bool = True
    report_interval: float = 0.5
    admission: int | None = None
    """At most this many queries of the app in flight (None: ``ALTO_ADMISSION``, else the
    app's; 0: no limit)."""


async def run_worker(app: App, transport: KafkaTransport, setup: WorkerSetup) -> WorkerStats:
    """Run ``setup.stage`` of ``app`` until a signal (or its parent's end) stops it.

    Every line it logs carries the app, the stage and the replica (see
    :mod:`alto_stream.ops.logs`).
    """
    replica = replica_label(setup.replica)
    with logs.labelled(app=app.name, stage=setup.stage, replica=replica):
        return await _run_worker(app, transport, setup, replica)


def escalating(*steps: Callable[[], None]) -> Callable[[], None]:
    """A signal handler that takes the next of ``steps`` at each signal (the last one again).

    A worker and a supervisor stop gently at the first signal, cut short at the
    second and end at once at the third.
    """
    taken = 0

    def on_signal() -> None:
        nonlocal taken
        step = steps[min(taken, len(steps) - 1)]
        taken += 1
        step()

    return on_signal


def replica_label(replica: str | None) -> str:
    """``replica``, or for a worker started by hand ``pid<process id>`` (unique per process)."""
    return replica if replica is not None else f"pid{os.getpid()}"


async def _run_worker(
    app: App, transport: KafkaTransport, setup: WorkerSetup, replica: str
) -> WorkerStats:
    options = WorkerOptions(
        delivery=setup.delivery,
        admission=_admission(setup),
        admission_target=_target(),
        **env_limits(),
    )
    worker = Worker(app, setup.stage, transport, options)
    plan = worker.plan
    keep_schema_versions(app)
    ops = KafkaOps(transport)
    if setup.check_topics:
        topics = [plan.input_topic, plan.output_topic, plan.dead_letter_topic]
        missing = await missing_topics(ops, [*topics, *filter(None, [plan.changelog_topic])])
        if missing:
            await ops.raise_if_denied(missing)  # ACLs hide a topic as if it did not exist
            raise ConfigError(
                f"stage {plan.name!r} of app {app.name!r} needs topics that do not exist: "
                f"{', '.join(missing)}; fix: `alto-stream topics apply "
                f"{shlex.quote(setup.app_ref or app.name)}` first (`alto-stream up` creates "
                "them itself)"
            )
        await _note_a_new_group(ops, plan.group, plan.input_topic, plan.name)
    # The models this app declared for this stage: checked, preloaded.
    await resources.start_for(plan.name, app.name)
    metrics = None
    if setup.metrics_port is not None:
        metrics = WorkerMetrics(app.name, plan.name, replica)
        serve(setup.metrics_port, metrics.registry)

    async def lag() -> dict[Partition, int]:
        return await ops.group_lag(plan.group, [plan.input_topic])

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    ended = False  # by a third signal

    def cut_now() -> None:
        log.warning(
            "a second stop signal: records in flight are cut short now (their next "
            "owner runs them again); a third ends the process at once"
        )
        worker.stop(now=True)

    def end() -> None:
        nonlocal ended
        ended = True
        if task is not None:
            task.cancel()

    on_signal = escalating(worker.stop, cut_now, end)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
    loop.set_exception_handler(_quiet_fencing)
    helpers = [
        asyncio.create_task(
            report_loop(
                worker.stats,
                stage=plan.name,
                replica=replica,
                metrics=metrics,
                stats_file=setup.stats_file,
                lag=lag if metrics is not None else None,
                interval=setup.report_interval,
                assigned=lambda: len(worker.partitions),
            )
        )
    ]
    helpers.append(asyncio.create_task(_watch_loop(plan.name, transport.timing.session_timeout)))
    parent = os.environ.get(PARENT_PID_ENV)
    if parent and parent.isdigit():
        helpers.append(asyncio.create_task(_watch_parent(int(parent), worker)))
    log.info(
        "worker %s started: stage %s of app %s, pid %d, group %s, %s, reading %s",
        replica,
        plan.name,
        app.name,
        os.getpid(),
        plan.group,
        setup.delivery,
        plan.input_topic,
    )
    _calm_collector()
    try:
        return await worker.run()
    except asyncio.CancelledError:
        if not ended:
            raise
        log.warning("a third stop signal: stopped at once, with nothing more committed")
        raise KeyboardInterrupt from None  # the CLI's "interrupted", exit 130
    finally:
        for helper in helpers:
            helper.cancel()
        for helper in helpers:
            with contextlib.suppress(asyncio.CancelledError):
                await helper
        await resources.close_all()  # models and clients the handlers started
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            loop.remove_signal_handler(sig)
        loop.set_exception_handler(None)
        log.info("worker %s stopped (%s)", replica, worker.stats.summary())


async def _note_a_new_group(ops: KafkaOps, group: str, topic: str, stage: str) -> None:
    """Say so when a stage's group starts from the beginning of a topic that holds records.

    A stage added to an app, or renamed, is a new group: it runs every record its
    input topic still holds, not only the queries in flight (with an LLM stage,
    every past call again); a new user found out from the bill. A group with
    offsets on other topics only reads a new topic because a stage before it was
    added, removed or renamed: queries that finished run again (a second final)
    and those in flight at the change may never finish; that went unsaid too.
    """
    try:
        committed = await ops.committed_topics(group)
        if topic in committed:
            return
        waiting = sum((await ops.group_lag(group, [topic])).values())
    except TransportError:
        return  # an ACL may hide a group's offsets: not a reason to refuse a start
    if committed:
        log.warning(
            "stage %s: its group %s has committed offsets on %s but none on %s, the topic it "
            "reads now: the app's topology changed (a stage before it added, removed or "
            "renamed). It starts at the beginning of %s (%d records): queries that finished "
            "run again here and may end twice, and those in flight at the change may never "
            "end; drain the app before such a change (docs/operations.md, 'Upgrading an app')",
            stage,
            group,
            ", ".join(sorted(committed)),
            topic,
            topic,
            waiting,
        )
    elif waiting:
        log.warning(
            "stage %s: its group %s has committed nothing yet, so it starts at the "
            "beginning of %s, which holds %d records: a new or renamed stage runs every "
            "record its topic keeps (docs/operations.md, 'Upgrading an app')",
            stage,
            group,
            topic,
            waiting,
        )


_LOOP_TICK = 0.5
"""How often the loop watch looks at the clock (seconds)."""


async def _watch_loop(stage: str, session_timeout: float, *, tick: float = _LOOP_TICK) -> None:
    """Say so when the event loop was held (a handler that never awaits), and for how long.

    A handler that blocks the loop (``time.sleep``, long CPU work in an ``async def``)
    stops the heartbeats too: held past the session timeout, the worker loses its
    partitions and its records run again elsewhere; before, only aiokafka's lines
    ("Heartbeat session expired", "CommitFailedError ... poll loop") hinted at why.
    A process stopped from outside holds it as well, through no handler's fault: one
    continued by SIGCONT (``kill -STOP``/``-CONT``, a debugger, a shell's Ctrl-Z) is
    told apart by that signal; a frozen one (a paused container, a suspended host)
    gets no signal, so the line names both causes.
    """
    loop = asyncio.get_running_loop()
    limit = max(2.0, session_timeout / 3)
    continued = [0.0]
    previous = _on_sigcont(lambda: continued.__setitem__(0, time.monotonic()))
    try:
        while True:
            before, since = loop.time(), time.monotonic()
            await asyncio.sleep(tick)
            held = loop.time() - before - tick
            if held >= limit:
                log.warning(_held_line(stage, held, session_timeout, continued[0] >= since))
    finally:
        if previous is not None:
            signal.signal(signal.SIGCONT, previous)


def _on_sigcont(note: Callable[[], None]) -> signal.Handlers | Callable[..., Any] | int | None:
    """Call ``note`` on SIGCONT; returns the handler it replaced (None: not the main thread)."""
    try:
        return signal.signal(signal.SIGCONT, lambda _signum, _frame: note())
    except ValueError:  # only the main thread sets signal handlers
        return None


def _held_line(stage: str, held: float, session_timeout: float, stopped: bool) -> str:
    """The warning for an event loop held ``held`` seconds (``stopped``: by SIGSTOP)."""
    lost = " (longer than the session timeout: its partitions moved)"
    lost = lost if held >= session_timeout else ""
    if stopped:
        return (
            f"stage {stage}: the process was stopped for {held:.1f} s{lost}: it was sent "
            "SIGSTOP (or Ctrl-Z, a debugger) and SIGCONT; its heartbeats stopped with it, "
            "no handler held it"
        )
    return (
        f"stage {stage}: the event loop was held for {held:.1f} s{lost}: a handler that "
        "does not await (time.sleep, CPU work) stops heartbeats too, and so does a "
        "process frozen from outside (a paused container, a suspended host); fix: run "
        "blocking work with `await asyncio.to_thread(...)`, or raise --session-timeout "
        f"({session_timeout:g} s)"
    )


ADMISSION_ENV = "ALTO_ADMISSION"
"""The admission limit a worker takes when its setup names none (``--admission`` sets it)."""


def _admission(setup: WorkerSetup) -> int | None:
    if setup.admission is not None:
        return setup.admission
    text = os.environ.get(ADMISSION_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise ConfigError(
            f"{ADMISSION_ENV} must be a number of queries (0: no limit), got {text!r}"
        )
    return int(text)


TARGET_ENV = "ALTO_ADMISSION_TARGET"
"""The latency (s) wanted for admitted queries (``--admission-target`` sets it)."""


def _target() -> float | None:
    text = os.environ.get(TARGET_ENV, "").strip()
    if not text:
        return None
    try:
        target = float(text)
    except ValueError:
        target = 0.0
    if target <= 0:
        raise ConfigError(f"{TARGET_ENV} must be a number of seconds > 0, got {text!r}")
    return target


_YOUNG_OBJECTS = 10_000
"""Allocations between two young-generation collections (CPython's default: 700)."""


def _calm_collector() -> None:
    """Make the cyclic garbage collector cheap for a long-running worker.

    A worker allocates a few dozen objects per record and frees almost all of
    them by reference counting; at CPython's default threshold the collector
    still ran about every 25 records (5% of a trivial map's time). What exists
    now (modules, the app, schemas) lives as long as the process: frozen, full
    collections no longer walk it.
    """
    gc.freeze()
    gc.set_threshold(_YOUNG_OBJECTS, 20, 20)


def _quiet_fencing(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Log a fenced producer's leftover futures as what they are, not as tracebacks.

    When a newer owner fences a transactional producer, aiokafka fails a future
    of its own that nobody awaits; the worker has already handled the fencing
    (it drops the partition), so "exception never retrieved" would only alarm.
    """
    if is_fencing(context.get("exception")):
        log.info("a fenced producer's pending request failed, as expected: %s", context["message"])
        return
    loop.default_exception_handler(context)


def _dump_tasks() -> None:
    """On SIGUSR1: log where every asyncio task of the worker is waiting (for debugging)."""
    for task in asyncio.all_tasks():
        chain: list[str] = []
        coro: Any = task.get_coro()
        while coro is not None and len(chain) < 20:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
            if frame is not None:
                chain.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
        log.warning("task %s: %s", task.get_name(), " -> ".join(chain) or "(not started)")


async def _watch_parent(parent: int, worker: Worker) -> None:
    while True:  # no event tells a child that its parent died: poll
        if os.getppid() != parent:
            break
        await asyncio.sleep(1.0)
    log.warning("the supervisor (pid %d) is gone: stopping", parent)
    worker.stop()
