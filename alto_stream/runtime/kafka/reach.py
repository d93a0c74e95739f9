"""One line when a worker loses its Kafka cluster, one when it has it back.

aiokafka reconnects by itself and says so only by failing, many lines a second
(rate-limited by :class:`alto_stream.ops.logs.RepeatFilter`); after an outage
the last line a worker wrote was ``Heartbeat session expired - marking
coordinator dead`` although it had recovered. :class:`Reach` turns "does the
consumer hold a connection to any broker now?", asked every second, into two
lines: ``Kafka unreachable since 12:59:04Z`` and ``Kafka reachable again after
48 s``. A consumer group member always holds one while it can (its heartbeats
and fetches keep its connections busy), so none for :data:`GRACE` seconds means
the cluster is out of reach (down, or the network), not a connection closed and
reopened.

>>> reach = Reach("g")
>>> [reach.observe(connected, at) for connected, at in [(True, 0), (False, 1), (False, 3)]]
[None, None, None]
>>> reach.observe(False, 4).split(" (")[0]
'Kafka unreachable since 00:00:01Z'
>>> reach.observe(True, 49)
'Kafka reachable again after 48 s (group g, unreachable since 00:00:01Z)'
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

__all__ = ["GRACE", "INTERVAL", "Reach", "watch"]

log = logging.getLogger(__name__)

INTERVAL = 1.0
"""Seconds between two looks at the consumer's connections."""

GRACE = 3.0
"""Seconds without any connection before the cluster counts as unreachable."""


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%SZ", time.gmtime(at))


class Reach:
    """Whether a consumer reaches its cluster, from its connections observed over time."""

    def __init__(self, group: str, grace: float = GRACE) -> None:
        self.group = group
        self.grace = grace
        self.lost_at: float | None = None
        """When no connection was first seen (None while connected)."""
        self.said = False
        """Whether the loss was logged (only a loss longer than ``grace`` is)."""

    def observe(self, connected: bool, at: float) -> str | None:
        """Take one look (``at``: epoch seconds); the line to log, if this look changes it."""
        if connected:
            lost_at, said = self.lost_at, self.said
            self.lost_at, self.said = None, False
            if lost_at is None or not said:
                return None
            return (
                f"Kafka reachable again after {at - lost_at:.0f} s "
                f"(group {self.group}, unreachable since {_clock(lost_at)})"
            )
        if self.lost_at is None:
            self.lost_at = at
        if self.said or at - self.lost_at < self.grace:
            return None
        self.said = True
        return (
            f"Kafka unreachable since {_clock(self.lost_at)} (group {self.group} has no "
            "connection to any broker; aiokafka reconnects by itself, and the records wait)"
        )


async def watch(connected: Callable[[], bool], reach: Reach, interval: float = INTERVAL) -> None:
    """Look at ``connected()`` every ``interval`` seconds and log what :class:`Reach` says."""
    while True:
        line = reach.observe(connected(), time.time())
        if line is not None:
            log.warning("%s", line)
        await asyncio.sleep(interval)
