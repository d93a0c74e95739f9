"""``alto_stream.testing.read_topic`` and ``read_changelog`` over the in-memory transport.

An aggregate's changelog holds kept markers (an empty value), ``fired`` entries
(no ancestry) and tombstones: read_topic raised on every changelog (``missing
alto.ancestry header``; on Kafka ``a END marker must have no value``) although
``tail`` decodes the same records.
"""

from __future__ import annotations

import pytest

from alto_stream.client import Client
from alto_stream.errors import DecodeError
from alto_stream.runner import LocalRun
from alto_stream.runtime.memory import MemoryTransport
from alto_stream.testing import read_changelog, read_topic
from alto_stream.transport import OutRecord
from workers import textflow

pytestmark = pytest.mark.timeout(30)

DOC = "Hello there skip. Bye now.\n\nSecond para."


async def _run(name: str) -> MemoryTransport:
    transport = MemoryTransport(2)
    app = textflow.build(name)
    async with LocalRun(app, transport), Client(app, transport) as client:
        finals = await client.run([{"text": DOC}], timeout=10)
    assert len(finals) == 1
    return transport


async def test_read_topic_returns_a_changelogs_fragments() -> None:
    transport = await _run("read-changelog")
    topology = textflow.build("read-changelog").topology()
    changelog = topology.stages["sentence_text"].changelog_topic
    assert changelog is not None

    fragments = await read_topic(transport, changelog, topology.codec())

    kinds = {envelope.kind.name for _, envelope in fragments}
    assert {"DATA", "SKIP"} <= kinds  # "skip" is dropped by shout: a kept skip marker
    assert all(record.topic == changelog for record, _ in fragments)


async def test_read_changelog_says_what_each_entry_is() -> None:
    transport = await _run("read-entries")
    topology = textflow.build("read-entries").topology()
    changelog = topology.stages["sentence_text"].changelog_topic
    assert changelog is not None

    entries = await read_changelog(transport, changelog, topology.codec())

    fired = [e.entry for e in entries if e.entry and e.entry.startswith("fired")]
    assert len(fired) == 3  # one per sentence
    tombstones = [e for e in entries if e.entry and e.entry.startswith("tombstone")]
    assert tombstones
    fragments = [e for e in entries if e.envelope is not None]
    assert len(fragments) == len(await read_topic(transport, changelog, topology.codec()))
    assert len(entries) == len(fired) + len(tombstones) + len(fragments)


async def test_an_undecodable_record_still_raises() -> None:
    transport = MemoryTransport(1)
    for topic in ("plain", "x.changelog"):
        transport.append(OutRecord(topic, b"junk", (), b"k", 0))
        with pytest.raises(DecodeError, match=r"alto\.ancestry"):
            await read_topic(transport, topic)
    with pytest.raises(DecodeError, match=r"alto\.ancestry"):
        await read_changelog(transport, "x.changelog")
