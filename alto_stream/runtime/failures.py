"""What a worker writes for a record it could not process: a dead letter and a marker.

Nothing here may fail on a bad record: a dead letter is built from whatever
the record holds (a marker's ancestry, no ancestry at all, megabytes of
garbage) and always fits within the size limit, cut down if it must be, with
the cut said in its error text. The marker that flows on in the record's place
is an ERROR marker with the record's path, so that whoever counts the record's
siblings still completes; an END marker's stands for the split it ended (its
parent), since an error can hold no count.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from alto_stream.ancestry import Ancestry, Kind
from alto_stream.errors import AltoError, StageError
from alto_stream.message import Envelope, MessageCodec
from alto_stream.transport import InRecord, OutRecord

__all__ = [
    "REASON_LIMIT",
    "OutputTooLargeError",
    "dead_letter",
    "error_ancestry",
    "reason_of",
    "record_size",
]

REASON_LIMIT = 1000
"""The most characters of an error kept in a marker's reason (it rides in a header)."""

_LETTER_ROOM = 4096
"""Bytes kept free in a dead letter for its own fields, headers and error text."""


class OutputTooLargeError(StageError):
    """An output larger than the worker may write (``WorkerOptions.max_record_bytes``)."""


def record_size(record: OutRecord) -> int:
    """About what ``record`` weighs on the wire: key, value and headers."""
    size = len(record.value or b"") + len(record.key or b"")
    for key, value in record.headers:
        size += len(key) + len(value or b"")
    return size


def reason_of(exc: BaseException) -> str:
    """The error as a marker's reason: type and message, at most :data:`REASON_LIMIT` chars."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= REASON_LIMIT else text[: REASON_LIMIT - 3] + "..."


def error_ancestry(ancestry: Ancestry, reason: str) -> Ancestry | None:
    """The ERROR marker that stands for a failed record of ``ancestry`` (None: nothing can).

    Same path; a failed END marker is replaced by an error about the record
    whose split it ended. A root END marker (no parent) gets none.
    """
    if ancestry.kind is Kind.END:
        if not ancestry.path:
            return None
        ancestry = ancestry.prefix(ancestry.depth - 1)
    return Ancestry.from_fields(
        ancestry.query_id,
        ancestry.query_time,
        ancestry.path,
        Kind.ERROR,
        reason,
        ancestry.replay_of,
    )


def _letter_ancestry(ancestry: Ancestry | None, record: InRecord) -> Ancestry:
    """The ancestry a dead letter carries: the record's own as DATA (a letter has a value)."""
    if ancestry is None:
        return Ancestry.root(
            f"undecodable-{record.topic}-{record.partition}-{record.offset}",
            query_time=record.timestamp,
        )
    if ancestry.kind is Kind.DATA:
        return ancestry
    return Ancestry.from_fields(
        ancestry.query_id, ancestry.query_time, ancestry.path, Kind.DATA, None, ancestry.replay_of
    )


def dead_letter(
    record: InRecord,
    exc: BaseException,
    ancestry: Ancestry | None,
    *,
    stage: str,
    topic: str,
    codec: MessageCodec,
    limit: int,
) -> OutRecord:
    """The dead letter of ``record`` on ``topic``: at most ``limit`` bytes, whatever came.

    The original value and headers are kept whole when they fit, else cut to
    fit (the error text says how much was cut); an ancestry header too large to
    carry is replaced by a stand-in root.
    """
    error = f"{type(exc).__name__}: {exc}" if isinstance(exc, AltoError) else repr(exc)
    if len(error) > REASON_LIMIT * 4:
        error = error[: REASON_LIMIT * 4] + "..."
    room = max(0, limit - _LETTER_ROOM)
    origin = _letter_ancestry(ancestry, record)
    if len(codec.encode_ancestry(origin)) > room // 2:
        origin = _letter_ancestry(None, record)
    room -= len(codec.encode_ancestry(origin))
    headers, cut_headers = _fit_headers(record.headers, room // 2)
    room -= sum(len(h["key"]) + len(h["value"] or b"") for h in headers)
    value, key = record.value, record.key
    cut = []
    if key is not None and len(key) > 256:
        key = key[:256]
        cut.append(f"key cut from {len(record.key or b'')} bytes to 256")
    if value is not None and len(value) > room:
        value = value[: max(0, room)]
        cut.append(f"value cut from {len(record.value or b'')} bytes to {len(value)}")
    if cut_headers:
        cut.append(f"{cut_headers} header(s) left out")
    if cut:
        error += f" [dead letter truncated to fit {limit} bytes: {'; '.join(cut)}]"
    letter: dict[str, Any] = {
        "stage": stage,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "error": error,
        "error_type": type(exc).__name__,
        "time": time.time(),
        "key": key,
        "value": value,
        "headers": headers,
    }
    data, out_headers = codec.encode(Envelope(origin, letter, "alto.DeadLetter", stage))
    return OutRecord(topic, data, out_headers, key)


def _fit_headers(
    headers: Sequence[tuple[str, bytes | None]], room: int
) -> tuple[list[dict[str, Any]], int]:
    """The record's headers that fit in ``room`` bytes (in order), and how many did not."""
    kept: list[dict[str, Any]] = []
    left_out = 0
    for key, value in headers:
        size = len(key) + len(value or b"")
        if size > room:
            left_out += 1
            continue
        room -= size
        kept.append({"key": str(key), "value": None if value is None else bytes(value)})
    return kept, left_out
