"""An aggregate's restore meets records it cannot read, and long changelogs.

Found by a new user fuzzing every topic: one garbage record on an aggregate's
changelog (a key that is not UTF-8) stopped every worker that took the partition
over, and `up` restarted them for ever; and the restore of a changelog of
100,000 fragments held the event loop 10-15 s (past the session timeout), so
the partition moved on before its restore could end.
"""

from __future__ import annotations

import asyncio

from alto_stream.aggregate import Tracker
from alto_stream.ancestry import Ancestry
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runtime.memory import MemoryTransport
from alto_stream.runtime.state import AggregateState
from alto_stream.transport import InRecord, OutRecord

ROOT = Ancestry.root("q", query_time=0.0)


def _fragment(state: AggregateState, codec: MessageCodec, index: int) -> OutRecord:
    child = Envelope(ROOT.child("a", index), {"text": f"c{index}"}, "alto.Text", "split")
    value, headers = codec.encode(child)
    source = InRecord("in", 0, index, None, value, headers, 0.0)
    return state.fragment_record(0, "q", source, child.ancestry)


async def test_unreadable_records_are_left_out_and_kept_for_the_caller() -> None:
    codec = MessageCodec()
    transport = MemoryTransport(1)
    transport.create_topic("cl", 1)
    writer = AggregateState("cl", lambda: Tracker(0, 1), codec)
    transport.append(_fragment(writer, codec, 0))
    transport.append(_fragment(writer, codec, 1))
    # Garbage: a key that is not UTF-8; headers that are not alto-stream's; a real
    # fragment's headers with a value its schema cannot read.
    transport.append(OutRecord("cl", b"junk", [], b"\xc7\xff", partition=0))
    transport.append(
        OutRecord("cl", b"junk", [("alto.ancestry", b"\x01")], b"q|x|DATA", partition=0)
    )
    bad_value = _fragment(writer, codec, 2)
    transport.append(
        OutRecord("cl", b"\xff\xff\xff", bad_value.headers, bad_value.key, partition=0)
    )
    restored = AggregateState("cl", lambda: Tracker(0, 1), codec)
    assert await restored.restore(transport, 0) == []
    assert len(restored.tracker(0)) == 1  # the ancestor q, with its two good children
    unreadable = restored.take_unreadable(0)
    assert [u.record.key for u in unreadable] == [b"\xc7\xff", b"q|x|DATA", bad_value.key]
    assert isinstance(unreadable[0].error, UnicodeDecodeError)
    assert unreadable[0].ancestry is None and unreadable[1].ancestry is None
    assert unreadable[2].ancestry == ROOT.child("a", 2)  # its value did not read
    assert restored.take_unreadable(0) == []  # handed over once


async def test_a_long_restore_lets_the_event_loop_run() -> None:
    codec = MessageCodec()
    transport = MemoryTransport(1)
    transport.create_topic("cl", 1)
    writer = AggregateState("cl", lambda: Tracker(0, 1), codec)
    for index in range(5000):
        transport.append(_fragment(writer, codec, index))
    ticks = 0

    async def count() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    counter = asyncio.create_task(count())
    await asyncio.sleep(0)
    ticks = 0
    restored = AggregateState("cl", lambda: Tracker(0, 1), codec)
    await restored.restore(transport, 0)
    counter.cancel()
    assert ticks >= 4  # once per 1,000 records at least; before: 0 (MemoryTransport's read is sync)
    assert len(restored.tracker(0)) == 1  # all 5,000 children of q restored, q pending
