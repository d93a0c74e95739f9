"""How a worker runs (:class:`WorkerOptions`) and what it counts (:class:`WorkerStats`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from alto_stream.aggregate import DEFAULT_MAX_COUNT
from alto_stream.runtime.admission import AdmissionStats
from alto_stream.runtime.scheduling import SchedulerStats

__all__ = ["DeliveryMode", "WorkerOptions", "WorkerStats"]

DeliveryMode = Literal["at-least-once", "transactional"]
"""The two delivery modes (see :mod:`alto_stream.runtime.worker`)."""


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker runs (durations in seconds).

    ``shutdown_timeout``: how long a stop or a revocation lets records in hand
    finish; those still running then are cut short, stay uncommitted, and run
    again at the partition's next owner. ``max_record_bytes``: the largest
    output a worker writes (Kafka's default limit is 1 MiB); a larger one fails
    its record (dead letter + ERROR marker), and dead letters are cut to fit.
    ``max_children``: the most children a split may make, and claim at an aggregate.
    ``fired_retention``: how long an aggregate remembers an ancestor that fired
    (late and redelivered fragments of it are dropped meanwhile); then its
    fired entry gets a tombstone in the changelog.
    ``max_ancestry_bytes``: the largest ancestry header a record may carry (a
    1,000-frame ancestry takes about 20 KB); a larger one is a dead letter.
    ``admission``: at most this many queries of the app in flight (the first
    stage enforces it; None: ``App.admission``, 0: no limit);
    ``admission_target``: the latency (s) wanted for admitted queries: the limit
    becomes a ceiling and each first-stage replica adapts its cap below it
    (None: ``App.admission_target``);
    ``admission_timeout``: an admitted query with no final result after this
    long gives its slot back; ``admission_lookback``: how far back a first
    stage reads the outputs at its start, to know which queries finished (see
    :mod:`alto_stream.runtime.admission`).
    """

    delivery: DeliveryMode = "at-least-once"
    max_in_flight: int | None = None  # default: the stage's own
    max_buffered: int = 2000
    fetch_max: int = 500
    commit_interval: float = 0.2
    shutdown_timeout: float = 10.0
    expire_interval: float = 1.0
    max_record_bytes: int = 1_000_000
    max_children: int = DEFAULT_MAX_COUNT
    fired_retention: float = 7 * 24 * 3600.0
    max_ancestry_bytes: int = 65_536
    admission: int | None = None  # default: the app's
    admission_target: float | None = None  # default: the app's
    admission_timeout: float = 600.0
    admission_lookback: float = 600.0


@dataclass
class WorkerStats:
    """Counters a worker keeps (served as metrics, shown by ``up``)."""

    consumed: int = 0  # input records handled (not those fetched, then dropped by a rebalance)
    produced: int = 0
    errors: int = 0
    dead_letters: int = 0
    fired: int = 0
    pauses: int = 0
    fenced: int = 0
    rebalances: int = 0  # assignments received (the first one included)
    in_flight: int = 0
    buffered: int = 0
    handler_seconds: list[float] = field(default_factory=list, repr=False)
    scheduler: SchedulerStats | None = field(default=None, repr=False)
    """The ready queue's depth and waits (set by the worker)."""
    admission: AdmissionStats | None = field(default=None, repr=False)
    """The first stage's admission, when the app has a limit (set by the worker)."""

    def summary(self) -> str:
        """The counters on one line (for logs)."""
        return (
            f"consumed={self.consumed} produced={self.produced} errors={self.errors} "
            f"dead_letters={self.dead_letters} fired={self.fired} in_flight={self.in_flight}"
        )
