"""Live per-stage figures: replicas, records/s, in flight, errors and consumer lag.

:class:`StageBoard` is fed, every few seconds, a :class:`ClusterSnapshot` (what
Kafka says: topic offsets, each group's committed offsets and members) and,
when the workers' Prometheus endpoints are known, their scraped samples. From
two snapshots in a row it derives rates. It does no I/O itself.

Where each figure comes from:

- replicas: the workers of the stage that answered a metrics scrape (None
  without ``--metrics``);
- records/s in: how fast the group's committed offsets move on its input topic;
  records/s out: how fast the stage's output topic grows (markers included);
- lag: input end offsets minus committed offsets (as ``up`` shows it);
- errors: records in the stage's dead-letter topic (plus, from metrics, the
  failures the workers counted);
- in flight: ``alto_in_flight + alto_buffered`` from the workers' metrics (only
  the workers know it; None without ``--metrics``);
- consumed: the group's committed offsets summed over its input topic (where
  the group will read on from), so that it matches lag and written, which come
  from Kafka too: a worker's own counter starts at 0 when it restarts;
- written: the end offsets of the stage's output topic, summed.

While Kafka does not answer, the figures are the last it gave: ``stale`` says so
(a failed snapshot since, or none for ``stale_after`` seconds), with
``unreachable_since`` (when the first failed snapshot was asked for) and the
``error``.

>>> parse_metrics('alto_in_flight{app="a",stage="s",replica="0"} 3.0\\n')
[Sample(stage='s', replica='0', name='alto_in_flight', value=3.0)]
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from prometheus_client.parser import text_string_to_metric_families

from alto_stream.app import Topology
from alto_stream.errors import ConfigError

__all__ = ["ClusterSnapshot", "Sample", "StageBoard", "metrics_urls", "parse_metrics"]


@dataclass(frozen=True)
class ClusterSnapshot:
    """What Kafka said at one moment about an app's topics and groups."""

    time: float
    ends: Mapping[str, int]
    """Topic -> sum of its partitions' end offsets."""
    sizes: Mapping[str, int]
    """Topic -> records it holds now (end minus first offset, summed)."""
    committed: Mapping[str, int | None] = field(default_factory=dict)
    """Group -> sum of its committed offsets on its input topic (first offset where none)."""


class Sample(NamedTuple):
    """One scraped metric value of one worker."""

    stage: str
    replica: str
    name: str
    value: float


def parse_metrics(text: str) -> list[Sample]:
    """The ``alto_*`` samples of a Prometheus text page (histograms left out)."""
    samples = []
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("alto_") or family.type == "histogram":
            continue
        for s in family.samples:
            if s.name.endswith("_created") or "stage" not in s.labels:
                continue
            samples.append(Sample(s.labels["stage"], s.labels.get("replica", "?"), s.name, s.value))
    return samples


def metrics_urls(addresses: Iterable[str]) -> list[str]:
    """``host:port``, ``host:9100-9105`` or ``http://...`` as metrics URLs.

    >>> metrics_urls(["127.0.0.1:9100-9101"])
    ['http://127.0.0.1:9100/metrics', 'http://127.0.0.1:9101/metrics']
    """
    urls = []
    for address in addresses:
        if address.startswith(("http://", "https://")):
            urls.append(address)
            continue
        host, sep, ports = address.rpartition(":")
        first, dash, last = ports.partition("-")
        if not sep or not host or not first.isdigit() or (dash and not last.isdigit()):
            raise ConfigError(
                f"bad metrics address {address!r}: expected host:port, host:first-last "
                "(a port range, as `up --metrics-base-port` hands out) or a URL"
            )
        end = int(last) if dash else int(first)
        if end < int(first) or end - int(first) > 1000:
            raise ConfigError(f"bad port range in {address!r}: expected first <= last, <= 1000")
        urls += [f"http://{host}:{port}/metrics" for port in range(int(first), end + 1)]
    return urls


class StageBoard:
    """The per-stage figures of one app, updated from snapshots and samples."""

    def __init__(self, topology: Topology, *, stale_after: float = 10.0) -> None:
        self.topology = topology
        self.stale_after = stale_after
        self.unreachable_since: float | None = None
        self.error: str | None = None
        self.previous: ClusterSnapshot | None = None
        self.current: ClusterSnapshot | None = None
        self.samples: list[Sample] = []
        self.scraped_at: float | None = None
        self.rates: dict[str, tuple[float | None, float | None]] = {}

    def update(self, snapshot: ClusterSnapshot) -> None:
        """Take a new cluster snapshot (rates are measured against the one before)."""
        self.previous, self.current = self.current, snapshot
        self.unreachable_since = self.error = None
        if self.previous is None:
            return
        span = snapshot.time - self.previous.time
        if span <= 0:
            return
        for name, plan in self.topology.stages.items():
            rate_in = _rate(self.previous.committed, snapshot.committed, plan.group, span)
            rate_out = _rate(self.previous.ends, snapshot.ends, plan.output_topic, span)
            self.rates[name] = (rate_in, rate_out)

    def failed(self, error: str, asked_at: float) -> None:
        """A snapshot asked for at ``asked_at`` failed: the figures stay, marked stale."""
        if self.unreachable_since is None:
            self.unreachable_since = asked_at
        self.error = error

    def update_metrics(self, samples: list[Sample], at: float | None = None) -> None:
        """Take the samples of one scrape of every known worker."""
        self.samples = samples
        self.scraped_at = time.time() if at is None else at

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        """Stage -> its figures (None where unknown), when they were taken, whether stale."""
        now = time.time() if now is None else now
        snap = self.current
        stages = {}
        for name, plan in self.topology.stages.items():
            mine = [s for s in self.samples if s.stage == name]
            ends = snap.ends.get(plan.input_topic) if snap else None
            committed = snap.committed.get(plan.group) if snap else None
            letters = snap.sizes.get(plan.dead_letter_topic) if snap else None
            rate_in, rate_out = self.rates.get(name, (None, None))
            stages[name] = {
                "replicas": _replicas(mine) if self.scraped_at is not None else None,
                "in_per_s": rate_in,
                "out_per_s": rate_out,
                "lag": None if ends is None or committed is None else max(ends - committed, 0),
                "dead_letters": letters,
                "errors": _total(mine, "alto_errors_total"),
                "in_flight": _in_flight(mine),
                "consumed": committed,
                "written": snap.ends.get(plan.output_topic) if snap else None,
            }
        late = snap is not None and now - snap.time > self.stale_after
        return {
            "time": snap.time if snap else None,
            "metrics_time": self.scraped_at,
            "stale": self.unreachable_since is not None or late,
            "unreachable_since": self.unreachable_since,
            "error": self.error,
            "stages": stages,
        }


def _rate(
    before: Mapping[str, Any], after: Mapping[str, Any], key: str, span: float
) -> float | None:
    a, b = before.get(key), after.get(key)
    if a is None or b is None:
        return None
    return float(max(b - a, 0)) / span


def _total(samples: list[Sample], name: str) -> int | None:
    found = [s.value for s in samples if s.name == name]
    return int(sum(found)) if found else None


def _in_flight(samples: list[Sample]) -> int | None:
    found = [s.value for s in samples if s.name in ("alto_in_flight", "alto_buffered")]
    return int(sum(found)) if found else None


def _replicas(samples: list[Sample]) -> int | None:
    return len({s.replica for s in samples})
