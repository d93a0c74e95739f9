"""Fuzz: bad records of every kind among valid queries, on a real broker, both modes.

A CI-sized run of :mod:`benchmarks.fuzz` (``ALTO_FUZZ_BAD`` bad records per
mode, 300 by default). The long run is ``python -m benchmarks.fuzz --bad 10000``
(see docs/faults.md).
"""

from __future__ import annotations

import os

import pytest

from alto_stream.runtime.worker import DeliveryMode
from benchmarks.fuzz import run
from benchmarks.fuzz_records import KINDS

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(600)]

BAD = int(os.environ.get("ALTO_FUZZ_BAD", "300"))
SEED = int(os.environ.get("ALTO_FUZZ_SEED", "11"))


@pytest.mark.parametrize("delivery", ["at-least-once", "transactional"])
async def test_every_bad_record_is_accounted_for_and_every_valid_query_completes_once(
    kafka_bootstrap: str, delivery: DeliveryMode
) -> None:
    figures = await run(
        kafka_bootstrap,
        delivery=delivery,
        bad=BAD,
        valid=max(10, BAD // 30),
        seed=SEED,
        timeout=4.0,  # bogus partial trees close sooner; enough for a CI-sized backlog
    )
    print(figures)  # the figures, for -s runs
    assert figures.problems == []
    assert figures.valid_completed == figures.valid_correct == figures.valid
    assert figures.accounted_by_dead_letter + figures.accounted_by_own_output == figures.bad
    assert figures.dead_letters > 0 and figures.accounted_by_own_output > 0
    # Every common kind was drawn (the two rare, megabyte-sized ones need long runs).
    assert set(figures.kinds) >= set(KINDS) - {"large-payload", "oversized-ancestry"}
