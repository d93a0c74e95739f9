"""The reads behind the stage board: Kafka snapshots and the workers' metrics pages.

:class:`KafkaCluster` takes a :class:`~alto_stream.ui.stages.ClusterSnapshot`
of an app over the operating tools' :class:`~alto_stream.runtime.kafka.KafkaOps`
(one topic description, one admin client for the groups' committed offsets),
so it works against any cluster the bootstrap address reaches.
:func:`scrape` reads the workers' Prometheus pages (``up --metrics-base-port``
or ``worker --metrics-port``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from alto_stream.app import Topology
from alto_stream.runtime.kafka import KafkaOps
from alto_stream.ui.stages import ClusterSnapshot, Sample, parse_metrics

__all__ = ["ClusterSource", "KafkaCluster", "scrape"]

log = logging.getLogger(__name__)


class ClusterSource(Protocol):
    """Takes snapshots of an app's topics and groups (Kafka, or a test double)."""

    async def snapshot(self, topology: Topology) -> ClusterSnapshot:
        """What the cluster says now."""


class KafkaCluster:
    """Snapshots from a Kafka cluster, through the operating tools' reads."""

    def __init__(self, ops: KafkaOps) -> None:
        self.ops = ops

    async def snapshot(self, topology: Topology) -> ClusterSnapshot:
        """Offsets of every topic of the app, and each stage group's committed offsets."""
        states = await self.ops.describe_topics(topology.topic_names())
        ends = {name: sum(e for _, e in s.offsets.values()) for name, s in states.items()}
        sizes = {name: sum(e - f for f, e in s.offsets.values()) for name, s in states.items()}
        firsts = {
            (name, p): first for name, s in states.items() for p, (first, _) in s.offsets.items()
        }
        inputs = {plan.group: plan.input_topic for plan in topology.stages.values()}
        committed = await self._groups(inputs, firsts)
        return ClusterSnapshot(time.time(), ends, sizes, committed)

    async def _groups(
        self, inputs: Mapping[str, str], firsts: Mapping[tuple[str, int], int]
    ) -> dict[str, int | None]:
        """Per group: its committed offsets summed over its input topic."""
        # KafkaOps's admin client is borrowed: one connection for every group. Not
        # KafkaOps.group_lags: it would describe the topics and read their offsets again,
        # which snapshot() has just done. (Members are not asked for: aiokafka
        # 0.14 cannot decode Kafka 4.1's DescribeGroups answer; replicas come from
        # the workers' metrics instead.)
        admin: Any = self.ops._admin()
        committed: dict[str, int | None] = dict.fromkeys(inputs)
        try:
            await admin.start()
            for group, topic in inputs.items():
                found = await admin.list_consumer_group_offsets(group)
                done = {(tp.topic, tp.partition): meta.offset for tp, meta in found.items()}
                total = 0
                for (t, p), first in firsts.items():
                    if t == topic:
                        at = done.get((t, p), -1)
                        total += at if at >= 0 else first
                committed[group] = total
        except Exception as exc:  # the view carries on with what it has: a figure shows "?"
            log.warning("could not read the groups' committed offsets: %s", exc)
        finally:
            await admin.close()
        return committed


async def scrape(urls: Sequence[str], timeout: float = 2.0) -> list[Sample]:
    """The ``alto_*`` samples of every metrics page that answers (others are skipped)."""

    def fetch(url: str) -> list[Sample]:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return parse_metrics(response.read().decode())
        except (OSError, ValueError) as exc:
            log.debug("metrics %s did not answer: %s", url, exc)
            return []

    pages = await asyncio.gather(*(asyncio.to_thread(fetch, url) for url in urls))
    return [sample for page in pages for sample in page]
