"""Avro's primitive types, read and written: the leaves of :mod:`alto_stream.avro_fast`.

The compiled readers and writers of :mod:`alto_stream.avro_fast` are built out
of these functions: a zig-zag varint, a string, each primitive type's reader
(with the fewest bytes one of its values takes) and its writer. A writer takes
a value only of exactly its type (a bool is no int) and raises
:class:`MisfitError` for anything else, for fastavro to decide; a reader
raises one of :data:`READ_ERRORS` on bytes it cannot read.

>>> out = bytearray()
>>> put_long(-2, out)
>>> bytes(out), read_long(bytes(out), 0)
(b'\\x03', (-2, 1))
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

__all__ = [
    "PRIMITIVE_READERS",
    "PRIMITIVE_WRITERS",
    "READ_ERRORS",
    "MisfitError",
    "Put",
    "Reader",
    "Writer",
    "put_long",
    "put_string",
    "read_long",
    "read_string",
]

Reader = Callable[[bytes, int], tuple[Any, int]]
"""Reads one value at a position of the bytes; returns it and the next position."""

Writer = Callable[[Any], bytes]
"""The Avro binary of one value; :class:`MisfitError` if not exactly of the schema's types."""

READ_ERRORS = (ValueError, IndexError, struct.error)
"""What a :data:`Reader` raises on bytes it cannot read (then fastavro reads them, or says why)."""

Put = Callable[[Any, bytearray], None]
"""Appends one value's Avro binary to the buffer; :class:`MisfitError` if not of its type."""

_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_FLOAT = struct.Struct("<f")
_DOUBLE = struct.Struct("<d")


class MisfitError(Exception):
    """The value is not exactly of the schema's types: fastavro decides (converts, or explains)."""


def read_long(data: bytes, i: int) -> tuple[int, int]:
    """A zig-zag varint (Avro int and long) at ``i``; the value and the next position."""
    byte = data[i]
    if byte < 0x80:  # most lengths, counts and indexes: one byte
        return (byte >> 1) ^ -(byte & 1), i + 1
    i += 1
    value = byte & 0x7F
    shift = 7
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (value >> 1) ^ -(value & 1), i
        shift += 7
        if shift > 63:
            raise ValueError("a varint longer than 10 bytes")


def _read_null(data: bytes, i: int) -> tuple[None, int]:
    return None, i


def _read_boolean(data: bytes, i: int) -> tuple[bool, int]:
    byte = data[i]
    if byte > 1:
        raise ValueError(f"boolean byte {byte} is neither 0 nor 1")
    return byte == 1, i + 1


def _read_float(data: bytes, i: int) -> tuple[float, int]:
    return _FLOAT.unpack_from(data, i)[0], i + 4


def _read_double(data: bytes, i: int) -> tuple[float, int]:
    return _DOUBLE.unpack_from(data, i)[0], i + 8


def _read_bytes(data: bytes, i: int) -> tuple[bytes, int]:
    size, i = read_long(data, i)
    end = i + size
    if size < 0 or end > len(data):
        raise ValueError(f"{size} bytes at {i} do not fit in {len(data)}")
    return data[i:end], end


def read_string(data: bytes, i: int) -> tuple[str, int]:
    """An Avro string at ``i``; the text and the next position."""
    size, i = read_long(data, i)
    end = i + size
    if size < 0 or end > len(data):
        raise ValueError(f"a string of {size} bytes at {i} does not fit in {len(data)}")
    return data[i:end].decode(), end


def put_long(value: int, out: bytearray) -> None:
    """Append ``value`` as a zig-zag varint (Avro int and long; the caller checked its range)."""
    value = (value << 1) ^ (value >> 63)
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _put_null(value: Any, out: bytearray) -> None:
    if value is not None:
        raise MisfitError


def _put_boolean(value: Any, out: bytearray) -> None:
    if type(value) is not bool:
        raise MisfitError
    out.append(1 if value else 0)


def _put_int(value: Any, out: bytearray) -> None:
    if type(value) is not int or not _INT_MIN <= value <= _INT_MAX:
        raise MisfitError
    put_long(value, out)


def _put_checked_long(value: Any, out: bytearray) -> None:
    if type(value) is not int or not _LONG_MIN <= value <= _LONG_MAX:
        raise MisfitError
    put_long(value, out)


def _put_float(value: Any, out: bytearray) -> None:
    if type(value) is not float and type(value) is not int:  # an int, as fastavro: not a bool
        raise MisfitError
    out += _FLOAT.pack(value)


def _put_double(value: Any, out: bytearray) -> None:
    if type(value) is not float and type(value) is not int:
        raise MisfitError
    out += _DOUBLE.pack(value)


def _put_bytes(value: Any, out: bytearray) -> None:
    if type(value) is not bytes:
        raise MisfitError
    put_long(len(value), out)
    out += value


def put_string(value: Any, out: bytearray) -> None:
    """Append an Avro string; :class:`MisfitError` unless ``value`` is a ``str``."""
    if type(value) is not str:
        raise MisfitError
    data = value.encode()
    put_long(len(data), out)
    out += data


# (reader, the fewest bytes a value takes) and writer of each primitive
PRIMITIVE_READERS: dict[str, tuple[Reader, int]] = {
    "null": (_read_null, 0),
    "boolean": (_read_boolean, 1),
    "int": (read_long, 1),
    "long": (read_long, 1),
    "float": (_read_float, 4),
    "double": (_read_double, 8),
    "bytes": (_read_bytes, 1),
    "string": (read_string, 1),
}
PRIMITIVE_WRITERS: dict[str, Put] = {
    "null": _put_null,
    "boolean": _put_boolean,
    "int": _put_int,
    "long": _put_checked_long,
    "float": _put_float,
    "double": _put_double,
    "bytes": _put_bytes,
    "string": put_string,
}
