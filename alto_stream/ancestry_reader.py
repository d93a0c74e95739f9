"""A fast reader of the ``alto.ancestry`` header, for the current schema version only.

Every record a worker reads carries this header. fastavro's general reader
spends 5-10 µs on it (a Python-level read per field, then a dict that
:meth:`~alto_stream.ancestry.Ancestry.from_dict` turns into an ancestry); this
reader parses the one schema version it was written for straight into an
:class:`~alto_stream.ancestry.Ancestry` in 1.5-3 µs. It is used only for
headers whose writer fingerprint is :data:`FINGERPRINT` and only while that is
the registry's current ``alto.Ancestry`` (see :func:`matches`); anything else
goes to fastavro. ``tests/unit/test_ancestry_reader.py`` checks it against
fastavro on random ancestries and corrupted bytes, and fails when the schema
changes, so that this reader is updated with it.

The layout (Avro binary, after the 10-byte single-object header)::

    query_id: string   query_time: double   path: array<Frame>
    kind: enum Kind    reason: [null, string]   replay_of: [null, string]
    Frame = attempt: string, index: int, count: [null, int]
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TypeVar

from alto_stream.ancestry import Ancestry, Frame, Kind
from alto_stream.avro_fast import read_long as _long
from alto_stream.avro_fast import read_string as _string

__all__ = ["FINGERPRINT", "matches", "read"]

FINGERPRINT = bytes.fromhex("677870cec1a4719c")
"""The ``alto.Ancestry`` version this reader implements (its Avro CRC-64 fingerprint)."""

T = TypeVar("T")

_START = 10  # C3 01, then the 8-byte fingerprint
_KINDS = tuple(Kind)  # enum symbols in schema order
_DOUBLE = struct.Struct("<d").unpack_from


def matches(fingerprint: bytes) -> bool:
    """True when ``fingerprint`` is the schema version this reader implements."""
    return fingerprint == FINGERPRINT


def read(data: bytes) -> Ancestry:
    """The ancestry in ``data``, a single-object encoding written with :data:`FINGERPRINT`.

    Corrupt bytes raise ``ValueError`` (or ``IndexError``, ``struct.error``,
    :class:`~alto_stream.errors.AncestryError``): callers turn any of them into
    a :class:`~alto_stream.errors.DecodeError`.
    """
    query_id, i = _string(data, _START)
    query_time = _DOUBLE(data, i)[0]
    i += 8
    frames = []
    while True:
        count, i = _long(data, i)
        if count == 0:
            break
        if count < 0:  # a block with its size in bytes after the count
            count = -count
            _, i = _long(data, i)
        for _ in range(count):
            attempt, i = _string(data, i)
            index, i = _long(data, i)
            size, i = _optional_long(data, i)
            frames.append(Frame(attempt, index, size))
    kind, i = _long(data, i)
    if not 0 <= kind < len(_KINDS):
        raise ValueError(f"kind index {kind} is not one of {len(_KINDS)} symbols")
    reason, i = _optional_string(data, i)
    replay_of, i = _optional_string(data, i)
    if i != len(data):
        raise ValueError(f"{len(data) - i} trailing bytes after the ancestry")
    return Ancestry.from_fields(
        query_id, query_time, tuple(frames), _KINDS[kind], reason, replay_of, data
    )


def _optional_long(data: bytes, i: int) -> tuple[int | None, int]:
    return _optional(data, i, _long, "int")


def _optional_string(data: bytes, i: int) -> tuple[str | None, int]:
    return _optional(data, i, _string, "string")


def _optional(
    data: bytes, i: int, read: Callable[[bytes, int], tuple[T, int]], name: str
) -> tuple[T | None, int]:
    """A ``[null, <name>]`` union: its branch, then the value when not null."""
    branch, i = _long(data, i)
    if branch == 0:
        return None, i
    if branch == 1:
        return read(data, i)
    raise ValueError(f"union branch {branch} of [null, {name}]")
