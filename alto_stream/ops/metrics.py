"""Worker metrics: Prometheus series and a stats file, both fed from :class:`WorkerStats`.

A worker keeps plain counters (:class:`~alto_stream.runtime.worker.WorkerStats`);
:func:`report_loop` reads them every ``interval`` seconds and

- moves the Prometheus series of :class:`WorkerMetrics` (served by :func:`serve`
  on the worker's own port): records in and out, errors, dead letters,
  aggregates fired, in-flight and buffered records (the scheduler's queue
  depth), the handler latency and queue-wait histograms, the consumer lag of
  the stage's group, and for an app's first stage with an admission limit its
  admitted, in-flight and waiting queries and the admission-wait histogram
  (see docs/scheduling.md);
- writes a small JSON snapshot to a stats file (atomically), which the ``up``
  supervisor reads to draw its live table.

>>> from alto_stream.runtime.worker import WorkerStats
>>> snapshot(WorkerStats(consumed=3), stage="s", replica="0")["consumed"]
3
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from alto_stream.errors import ConfigError
from alto_stream.runtime.admission import AdmissionStats
from alto_stream.runtime.worker import WorkerStats
from alto_stream.transport import Partition

__all__ = [
    "LagSource",
    "WorkerMetrics",
    "read_stats",
    "report_loop",
    "serve",
    "snapshot",
    "write_stats",
]

LagSource = Callable[[], Awaitable[Mapping[Partition, int]]]
"""Returns the group's lag per partition (records not yet committed)."""

_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_COUNTERS = {
    "consumed": ("alto_records_in", "Records consumed from the stage's input topic."),
    "produced": ("alto_records_out", "Records written (outputs, markers, state, dead letters)."),
    "errors": ("alto_errors", "Records or aggregates that failed."),
    "dead_letters": ("alto_dead_letters", "Records sent to the dead-letter topic."),
    "fired": ("alto_aggregates_fired", "Ancestors an aggregate reassembled."),
}


class WorkerMetrics:
    """The Prometheus series of one worker, in their own registry."""

    def __init__(
        self, app: str, stage: str, replica: str, registry: CollectorRegistry | None = None
    ) -> None:
        self.registry = registry or CollectorRegistry()
        labels = {"app": app, "stage": stage, "replica": replica}
        names = list(labels)
        self._counters = {
            field: Counter(name, doc, names, registry=self.registry).labels(**labels)
            for field, (name, doc) in _COUNTERS.items()
        }
        self._in_flight = Gauge(
            "alto_in_flight", "Records being handled now.", names, registry=self.registry
        ).labels(**labels)
        self._buffered = Gauge(
            "alto_buffered", "Records fetched, waiting to start.", names, registry=self.registry
        ).labels(**labels)
        self._latency = Histogram(
            "alto_handler_seconds",
            "Time to handle one record (handler, retries and writes).",
            names,
            buckets=_BUCKETS,
            registry=self.registry,
        ).labels(**labels)
        self._queue_wait = Histogram(
            "alto_scheduler_queue_wait_seconds",
            "Time a record waited in the worker's queue (oldest query first) before it started.",
            names,
            buckets=_BUCKETS,
            registry=self.registry,
        ).labels(**labels)
        # Made with the first admission figures: only a stage that enforces a limit has them.
        self._admission: _AdmissionSeries | None = None
        self._lag = Gauge(
            "alto_consumer_lag",
            "Records of the input topic the stage's group has not committed (whole group).",
            [*names, "topic", "partition"],
            registry=self.registry,
        )
        self._labels = labels
        self._last = WorkerStats()
        self._seen = 0

    def update(self, stats: WorkerStats, lag: Mapping[Partition, int] | None = None) -> None:
        """Move every series to what ``stats`` (and ``lag``) say now."""
        for field, counter in self._counters.items():
            delta = getattr(stats, field) - getattr(self._last, field)
            if delta > 0:
                counter.inc(delta)
        self._last = WorkerStats(**{f: getattr(stats, f) for f in _COUNTERS})
        self._in_flight.set(stats.in_flight)
        self._buffered.set(stats.buffered)
        for seconds in _new_samples(stats.handler_seconds, self):
            self._latency.observe(seconds)
        if stats.scheduler is not None:
            for seconds in stats.scheduler.take_waits():
                self._queue_wait.observe(seconds)
        if stats.admission is not None:
            if self._admission is None:
                self._admission = _AdmissionSeries(list(self._labels), self._labels, self.registry)
            waiting = sum(lag.values()) if lag else stats.buffered
            self._admission.update(stats.admission, waiting)
        for (topic, partition), value in (lag or {}).items():
            self._lag.labels(**self._labels, topic=topic, partition=str(partition)).set(value)


class _AdmissionSeries:
    """The series of an app's admission, moved by the first stage's workers."""

    def __init__(
        self, names: list[str], labels: Mapping[str, str], registry: CollectorRegistry
    ) -> None:
        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, names, registry=registry).labels(**labels)

        self.limit = gauge("alto_admission_limit", "Queries this worker may admit (its share).")
        self.cap = gauge(
            "alto_admission_cap",
            "Queries this worker admits now: its share, or less under an admission target.",
        )
        self.in_flight = gauge("alto_admission_in_flight", "Queries admitted, not yet finished.")
        self.waiting = gauge(
            "alto_admission_waiting",
            "Queries waiting for admission: the input lag of the first stage's group "
            "(refreshed with the lag), or those held in the worker.",
        )
        self.admitted = Counter(
            "alto_admission_admitted", "Queries admitted.", names, registry=registry
        ).labels(**labels)
        self.timed_out = Counter(
            "alto_admission_timed_out",
            "Admitted queries whose final result never showed (slot given back).",
            names,
            registry=registry,
        ).labels(**labels)
        self.wait = Histogram(
            "alto_admission_wait_seconds",
            "Time from a query's arrival to its admission.",
            names,
            buckets=_BUCKETS,
            registry=registry,
        ).labels(**labels)
        self._last = (0, 0)

    def update(self, stats: AdmissionStats, waiting: int) -> None:
        self.limit.set(stats.share)
        self.cap.set(min(stats.cap, stats.share))
        self.in_flight.set(stats.in_flight)
        self.waiting.set(waiting)
        admitted, timed_out = self._last
        if stats.admitted > admitted:
            self.admitted.inc(stats.admitted - admitted)
        if stats.timed_out > timed_out:
            self.timed_out.inc(stats.timed_out - timed_out)
        self._last = (stats.admitted, stats.timed_out)
        for seconds in stats.take_waits():
            self.wait.observe(seconds)


def _new_samples(samples: list[float], metrics: WorkerMetrics) -> list[float]:
    # The worker trims its sample list by 5,000 from the front past 10,000.
    while metrics._seen > len(samples):
        metrics._seen = max(metrics._seen - 5_000, 0)
    new = samples[metrics._seen :]
    metrics._seen = len(samples)
    return new


def serve(port: int, registry: CollectorRegistry, *, addr: str = "0.0.0.0") -> None:
    """Serve ``registry`` on ``http://addr:port/metrics`` from a daemon thread."""
    try:
        start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on port {port}: {exc}; fix: choose a free port "
            "(--metrics-port / --metrics-base-port)"
        ) from exc


def snapshot(
    stats: WorkerStats,
    *,
    stage: str,
    replica: str,
    lag: Mapping[Partition, int] | None = None,
    assigned: int | None = None,
) -> dict[str, Any]:
    """A JSON-ready summary of ``stats`` (what the stats file holds).

    ``assigned``: how many input partitions the worker owns, ready to work.
    """
    recent = sorted(stats.handler_seconds[-1000:])
    return {
        "pid": os.getpid(),
        "stage": stage,
        "replica": replica,
        "time": time.time(),
        **{field: getattr(stats, field) for field in _COUNTERS},
        "in_flight": stats.in_flight,
        "buffered": stats.buffered,
        "rebalances": stats.rebalances,
        "handler_p50": recent[len(recent) // 2] if recent else None,
        "handler_p95": recent[int(len(recent) * 0.95)] if recent else None,
        "lag": None if lag is None else sum(lag.values()),
        "assigned": assigned,
    }


def write_stats(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` atomically (readers never see half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def read_stats(path: Path) -> dict[str, Any] | None:
    """The snapshot a worker wrote to ``path`` (None when absent or unreadable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


async def report_loop(
    stats: WorkerStats,
    *,
    stage: str,
    replica: str,
    metrics: WorkerMetrics | None = None,
    stats_file: Path | None = None,
    lag: LagSource | None = None,
    interval: float = 0.5,
    lag_interval: float = 5.0,
    assigned: Callable[[], int] | None = None,
) -> None:
    """Report ``stats`` every ``interval`` seconds until cancelled (then once more).

    ``assigned`` counts the input partitions the worker is ready to work on.
    """
    last_lag: Mapping[Partition, int] | None = None
    lag_due = 0.0
    try:
        while True:
            if lag is not None and time.monotonic() >= lag_due:
                lag_due = time.monotonic() + lag_interval
                try:
                    last_lag = await lag()
                except Exception:  # lag is best effort: a slow admin call must not stop work
                    last_lag = None
            _report(stats, stage, replica, metrics, stats_file, last_lag, assigned)
            await asyncio.sleep(interval)
    finally:
        _report(stats, stage, replica, metrics, stats_file, last_lag, assigned)


def _report(
    stats: WorkerStats,
    stage: str,
    replica: str,
    metrics: WorkerMetrics | None,
    stats_file: Path | None,
    lag: Mapping[Partition, int] | None,
    assigned: Callable[[], int] | None = None,
) -> None:
    if metrics is not None:
        metrics.update(stats, lag)
    if stats_file is not None:
        count = None if assigned is None else assigned()
        data = snapshot(stats, stage=stage, replica=replica, lag=lag, assigned=count)
        write_stats(stats_file, data)
