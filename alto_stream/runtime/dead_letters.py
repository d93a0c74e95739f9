"""A failed record's dead letter and the ERROR marker that flows on in its place.

Nothing here may fail on a bad record: a dead letter is built from whatever
the record holds (a marker's ancestry, no ancestry at all, megabytes of
garbage) and always fits within the size limit, cut down if it must be, with
the cut said in its error text. The marker that flows on in the record's place
is an ERROR marker with the record's path, so that whoever counts the record's
siblings still completes; an END marker's stands for the split it ended (its
parent), since an error can hold no count.

Pure functions; a worker's failure paths that write them are
:class:`~alto_stream.runtime.failures.RecordFailures`.
"""

from __future__ import annotations

import math
import os
import sysconfig
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from alto_stream.ancestry import Ancestry, Kind
from alto_stream.message import Envelope, MessageCodec
from alto_stream.transport import InRecord, OutRecord

__all__ = [
    "NO_RECORD",
    "REASON_LIMIT",
    "TRUNCATED",
    "dead_letter",
    "error_ancestry",
    "letter_ancestor",
    "letter_source",
    "reason_of",
    "where",
]

REASON_LIMIT = 1000
"""The most characters of an error kept in a marker's reason (it rides in a header)."""

TRUNCATED = "dead letter truncated to fit"
"""Said in a dead letter's error when its copy of the record was cut (replay refuses it)."""

NO_RECORD = -1
"""The offset in an aggregate's dead letter: it stands for an ancestor, no one input record."""

_LETTER_ROOM = 4096
"""Bytes kept free in a dead letter for its own fields, headers and error text."""


_NOT_THE_APP = tuple(
    os.path.normpath(path) + os.sep
    for path in {
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))),  # alto_stream
        sysconfig.get_paths()["stdlib"],
        sysconfig.get_paths()["purelib"],
        sysconfig.get_paths()["platlib"],
    }
)


def where(exc: BaseException) -> str:
    """`` (at FILE:LINE in NAME)``: the app's innermost frame of ``exc``'s traceback, or "".

    What a log line of a handler's failure needs to be acted on (a handler's
    ``KeyError`` named neither its file nor its line, even with ``-v``).
    """
    error: BaseException | None = exc
    for _ in range(8):  # the chain: a time-out's handler frame is in its context
        if error is None:
            break
        for frame in reversed(traceback.extract_tb(error.__traceback__)):
            path = os.path.normpath(os.path.abspath(frame.filename))
            if frame.filename.startswith("<") or path.startswith(_NOT_THE_APP):
                continue
            return f" (at {frame.filename}:{frame.lineno} in {frame.name})"
        error = error.__cause__ or error.__context__
    return ""


def reason_of(exc: BaseException, stage: str | None = None) -> str:
    """The error as a marker's reason: type and message, at most :data:`REASON_LIMIT` chars.

    With ``stage``, the stage it happened in comes first (``stage score: ValueError: ...``):
    the marker flows on through later stages, each writing it under its own name, and a
    reader of the final result should still see where the query failed.
    """
    text = f"{type(exc).__name__}: {exc}"
    if stage is not None:
        text = f"stage {stage}: {text}"
    return text if len(text) <= REASON_LIMIT else text[: REASON_LIMIT - 3] + "..."


def error_ancestry(ancestry: Ancestry, reason: str, *, now: float | None = None) -> Ancestry:
    """The ERROR marker that stands for a failed record of ``ancestry``.

    Same path; a failed END marker is replaced by an error about the record
    whose split it ended (a root END marker, which no stage writes, by an error
    about its query). A query time that is no time (NaN, infinite) becomes
    ``now`` (the record's timestamp; by default the current time).
    """
    if ancestry.kind is Kind.END and ancestry.path:
        ancestry = ancestry.prefix(ancestry.depth - 1)
    return Ancestry.from_fields(
        ancestry.query_id,
        _a_time(ancestry.query_time, time.time() if now is None else now),
        ancestry.path,
        Kind.ERROR,
        reason,
        ancestry.replay_of,
    )


def _letter_ancestry(ancestry: Ancestry | None, record: InRecord) -> Ancestry:
    """The ancestry a dead letter carries: the record's own as DATA (a letter has a value).

    A query time that is no time becomes the record's timestamp, so that the
    letter itself can be read (and replayed).
    """
    if ancestry is None:
        return Ancestry.root(
            f"undecodable-{record.topic}-{record.partition}-{record.offset}",
            query_time=record.timestamp,
        )
    if ancestry.kind is Kind.DATA and math.isfinite(ancestry.query_time):
        return ancestry
    query_time = _a_time(ancestry.query_time, record.timestamp)
    return Ancestry.from_fields(
        ancestry.query_id, query_time, ancestry.path, Kind.DATA, None, ancestry.replay_of
    )


def _a_time(query_time: float, fallback: float) -> float:
    """``query_time``, or ``fallback`` when it is no time (NaN, infinite: written by hand)."""
    return query_time if math.isfinite(query_time) else fallback


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
    text = str(exc)
    # As the marker's reason and the log say it (a repr before: ValueError('...')).
    error = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
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
        error += f" [{TRUNCATED} {limit} bytes: {'; '.join(cut)}]"
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


def letter_ancestor(letter: Mapping[str, Any]) -> str | None:
    """The ancestor an aggregate's dead letter stands for; None for one record's letter.

    An aggregate that fails on an ancestor (its handler, or a result too large)
    failed on no one record: its letter has offset :data:`NO_RECORD`, the
    ancestor's id as key, and no value or headers.
    """
    if letter.get("offset") != NO_RECORD or letter.get("headers") or letter.get("value"):
        return None
    return bytes(letter.get("key") or b"").decode("utf-8", "replace")


def letter_source(letter: Mapping[str, Any]) -> str:
    """Where a dead letter's record was read (``topic[partition]@offset``), as lines say it.

    An aggregate's letter names the ancestor it stands for instead of an offset.
    """
    where = f"{letter.get('topic')}[{letter.get('partition')}]"
    ancestor = letter_ancestor(letter)
    if ancestor is None:
        return f"{where}@{letter.get('offset')}"
    return (
        f"ancestor {ancestor} as a whole (an aggregate's failure, no one input record of {where})"
    )


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
