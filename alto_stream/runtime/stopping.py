"""A worker's stop: records in hand finish or are cut short; the last commits; the clients close.

The records still running at the deadline (or at once, on a second stop) are
cut short: never done, so never committed; the partition's next owner runs
them again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from alto_stream.message import Envelope
from alto_stream.runtime.offsets import OffsetBook
from alto_stream.runtime.ownership import Ownership
from alto_stream.runtime.scheduling import ReadyQueue, Runners
from alto_stream.runtime.stages import Processor
from alto_stream.runtime.transactional import Transactions
from alto_stream.transport import Consumer, InRecord, Producer

__all__ = ["close", "drain"]

log = logging.getLogger(__name__)


async def drain(
    stage: str,
    runners: Runners,
    ready: ReadyQueue,
    handle: Callable[[InRecord, Envelope, OffsetBook], Coroutine[Any, Any, None]],
    *,
    transactional: bool,
    timeout: float,
    cut_now: Callable[[], bool],
) -> None:
    """Let the records in hand finish within ``timeout``, then cut short those still running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not cut_now():
        if runners.working:
            await runners.wait_progress(0.05)
            continue
        # Records below one done run too, so that the commit reaches what is done.
        holes = [] if transactional else ready.take_holes(runners.limit)
        if not holes:
            break
        for entry in holes:
            runners.spawn(handle(entry.record, entry.envelope, entry.book))
    # Records still running are cut short: never done, so never committed; the
    # partition's next owner runs them again.
    cut = runners.busy + len(runners.tasks)
    if cut:
        log.warning(
            "stage %s: %d records still running %s are cut short; their next owner runs them again",
            stage,
            cut,
            "when told to stop at once (a second stop signal)"
            if cut_now()
            else f"after {timeout:.1f} s",
        )
    await runners.cancel()


async def close(
    stage: str,
    *,
    processor: Processor,
    ownership: Ownership,
    consumer: Consumer | None,
    producer: Producer | None,
    tx: Transactions | None,
) -> None:
    """Commit what is done (past the markers too) and stop the stage's clients."""
    assert consumer is not None
    assert producer is not None
    producer_stopped = False
    try:
        await processor.stop()
        await ownership.skip_markers(consumer, again=True)  # the last commits go past them too
        if tx is not None:
            await tx.commit_at_stop()
        else:
            # Outputs acknowledged first, so that finished records count as done.
            producer_stopped = True
            try:
                await producer.stop()
            except Exception:
                log.exception("stage %s: flushing outputs at the stop failed", stage)
            await ownership.commit(consumer)
    finally:
        await consumer.stop()
        if tx is not None:
            await tx.close()
        if not producer_stopped:
            await producer.stop()
