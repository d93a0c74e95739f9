"""`KafkaOps.group_lags` leaves nothing running on a client it closed, and is bounded.

While a broker node was down, one group's offsets failed (its coordinator was the
node) while the others' were still being asked: ``gather`` left them running on
the admin client being closed, and the connections they opened then were never
closed (``up``'s live table filled with "Unclosed AIOKafkaConnection", and a log
line from that finalizer froze it).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import NodeNotReadyError

from alto_stream.errors import TransportError
from alto_stream.runtime.kafka import KafkaOps, KafkaTransport

pytestmark = pytest.mark.timeout(30)


class FakeAdmin:
    """An admin client whose group ``down``'s offsets fail at once; the others' take a while."""

    def __init__(self, *, hang_start: bool = False) -> None:
        self.hang_start = hang_start
        self.running = 0
        """Offset calls under way."""
        self.running_at_close: int | None = None

    async def start(self) -> None:
        if self.hang_start:
            await asyncio.sleep(3600)

    async def close(self) -> None:
        self.running_at_close = self.running

    async def list_consumer_group_offsets(self, group: str) -> dict[Any, Any]:
        self.running += 1
        try:
            if group == "down":
                raise NodeNotReadyError("node 2 is not ready")
            await asyncio.sleep(0.5)  # the others answer a little later
            return {}
        finally:
            self.running -= 1

    async def list_topics(self) -> list[str]:
        return []


def _ops(admin: FakeAdmin, monkeypatch: pytest.MonkeyPatch) -> KafkaOps:
    ops = KafkaOps(KafkaTransport("127.0.0.1:9"))
    monkeypatch.setattr(ops, "_admin", lambda timeout=None: admin)
    return ops


def test_a_failed_group_leaves_no_other_call_running_on_the_closed_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = FakeAdmin()
    ops = _ops(admin, monkeypatch)

    async def main() -> None:
        with pytest.raises(TransportError, match="node 2 is not ready"):
            await ops.group_lags({"up": ["a"], "down": ["b"], "other": ["c"]})
        await asyncio.sleep(0.6)  # what gather left running has finished by now

    asyncio.run(main())
    assert admin.running_at_close == 0


def test_a_query_that_does_not_answer_times_out_and_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = FakeAdmin(hang_start=True)
    ops = _ops(admin, monkeypatch)
    with pytest.raises(TransportError, match=r"no answer within 0\.2 s") as caught:
        asyncio.run(ops.group_lags({"up": ["a"]}, timeout=0.2))
    assert isinstance(caught.value.__cause__, TimeoutError)
    assert admin.running_at_close == 0  # closed, though its start never ended
