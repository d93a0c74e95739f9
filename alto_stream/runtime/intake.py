"""A worker's intake: each fetched record decoded, checked and queued, or sent to the failure path.

A record of a partition no longer owned, or one its book says is done, is
dropped; one that cannot be decoded, with a runaway ancestry header, or that is
not a query on the app's input topic, becomes a dead letter; the rest join the
ready queue (:mod:`alto_stream.runtime.scheduling`).
"""

from __future__ import annotations

from alto_stream.app import StagePlan
from alto_stream.errors import DecodeError
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runtime.failures import RecordFailures
from alto_stream.runtime.offsets import OffsetBook
from alto_stream.runtime.ownership import Ownership
from alto_stream.runtime.scheduling import ReadyQueue, Runners
from alto_stream.transport import InRecord

__all__ = ["Intake"]


class Intake:
    """Decodes one worker's fetched records into its ready queue."""

    def __init__(
        self,
        plan: StagePlan,
        codec: MessageCodec,
        ownership: Ownership,
        ready: ReadyQueue,
        runners: Runners,
        failures: RecordFailures,
        *,
        reads_queries: bool,
    ) -> None:
        self.plan = plan
        self.codec = codec
        self.ownership = ownership
        self.ready = ready
        self.runners = runners
        self.failures = failures
        self.reads_queries = reads_queries

    def enqueue(self, record: InRecord, max_ancestry_bytes: int) -> None:
        tp = record.tp
        if tp not in self.ownership.owned:
            return  # fetched around a rebalance that took the partition away
        books = self.ownership.books
        book = books.get(tp)
        if book is None:
            book = books[tp] = OffsetBook()
        if book.skips(record.offset):
            return  # done by the partition's previous owner (its commit says so)
        if book.fetched_before(record.offset):
            # From a read before the take-over's seek, handed out after it: below the
            # committed offset (done), or fetched again from it. Never run twice.
            return
        book.fetched(record.offset)
        try:
            envelope = self.codec.decode(
                record.value,
                record.headers,
                reader_schema=self.plan.input_schema,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
            )
        except DecodeError as exc:
            failures = self.failures
            self.runners.spawn(
                failures.undecodable(record, exc, failures.ancestry_of(record), book)
            )
            return
        wire = envelope.ancestry.wire
        if wire is not None and len(wire) > max_ancestry_bytes:
            error = DecodeError(
                f"an {len(wire)}-byte ancestry header, larger than the limit of "
                f"{max_ancestry_bytes} (WorkerOptions.max_ancestry_bytes, "
                "ALTO_MAX_ANCESTRY_BYTES): "
                "corrupt or runaway lineage",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
            )
            self.runners.spawn(self.failures.undecodable(record, error, None, book))
            return
        if self.reads_queries and envelope.ancestry.depth > 0:
            self.runners.spawn(self.not_a_query(record, envelope, book))
            return
        self.ready.push(record, envelope, book)

    async def not_a_query(self, record: InRecord, envelope: Envelope, book: OffsetBook) -> None:
        """A fragment written onto the app's input topic: a dead letter, and its query fails.

        The input holds queries, records at the root; a deeper one (written there by
        hand) would run through stages that expect a query and fail further on, or
        make a final of nothing (an end marker), or none: its query ends here, with
        an ERROR final.
        """
        ancestry = envelope.ancestry
        error = DecodeError(
            f"a {ancestry.kind.name} record of depth {ancestry.depth} on the app's input topic "
            f"{record.topic}, which holds queries (depth 0): written there by hand? Push "
            "queries with the client or `alto-stream push`; send a fragment to the stage "
            "that reads it with `alto-stream replay ... --to-stage STAGE`",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
        await self.failures.undecodable(record, error, ancestry.prefix(0), book)
