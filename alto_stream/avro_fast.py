"""Compiled Avro readers and writers for schemas that need nothing fastavro adds.

fastavro's schemaless reader and writer spend 3-4 µs a call on a one-field
record, most of it set-up per call, and a worker reads and writes a value for
every record it handles. For schemas made only of primitives, records, enums,
fixed, arrays, maps and two-branch ``null`` unions (every ``alto.*`` payload),
this module builds a reader and a writer out of closures, one per field, that
do the same work in about a third of the time.

They never decide anything fastavro would decide differently: the codec uses
a compiled function as a first try only, and when it raises (a value of
another type, a float for a long say; corrupt bytes) the codec checks the
value and asks fastavro, which gives the result or the error it always gave.
An int for a float or double, and fields left out that have a default, are
written here as fastavro writes them. A value the compiled
writer accepts is written byte for byte as fastavro writes it, and bytes the
compiled reader accepts read as fastavro reads them: property tests check
both (``tests/unit/test_avro_fast.py``). Schemas with logical types, other
unions or recursion get no compiled functions.

Records, enums, fixed, arrays, maps and unions are built here on the primitive
types of :mod:`alto_stream.avro_primitives` (which :class:`MisfitError`,
:data:`READ_ERRORS`, :data:`Reader` and :data:`Writer` come from: re-exported).
"""

from __future__ import annotations

import struct
from typing import Any

from alto_stream.avro_primitives import (
    PRIMITIVE_READERS,
    PRIMITIVE_WRITERS,
    READ_ERRORS,
    MisfitError,
    Put,
    Reader,
    Writer,
    put_long,
    put_string,
    read_long,
    read_string,
)

__all__ = [
    "READ_ERRORS",
    "MisfitError",
    "Reader",
    "Writer",
    "compile_reader",
    "compile_writer",
    "read_long",
    "read_string",
]


class _UnsupportedError(Exception):
    """The schema uses something only fastavro handles."""


def compile_reader(schema: Any) -> Reader | None:
    """A reader of ``schema`` (its self-contained JSON form), or None if unsupported."""
    try:
        return _Compiler().reader(schema, "")[0]
    except _UnsupportedError:
        return None


def compile_writer(schema: Any) -> Writer | None:
    """A writer of ``schema`` (its self-contained JSON form), or None if unsupported."""
    try:
        put = _Compiler().writer(schema, "")
    except _UnsupportedError:
        return None

    def write(value: Any) -> bytes:
        out = bytearray()
        try:
            put(value, out)
        except (KeyError, UnicodeEncodeError, OverflowError, struct.error) as exc:
            raise MisfitError(str(exc)) from exc
        return bytes(out)

    return write


# -- composite types ----------------------------------------------------------


class _Compiler:
    """Builds the reader or writer of one schema, resolving the named types it defines."""

    def __init__(self) -> None:
        self._readers: dict[str, tuple[Reader, int]] = {}
        self._writers: dict[str, Put] = {}
        self._named: dict[str, Any] = {}  # full name -> definition (dict)

    def reader(self, schema: Any, namespace: str) -> tuple[Reader, int]:
        """The reader of ``schema`` and the fewest bytes one of its values takes."""
        if isinstance(schema, str):
            if schema in PRIMITIVE_READERS:
                return PRIMITIVE_READERS[schema]
            return self._named_reader(self._full(schema, namespace))
        if isinstance(schema, list):
            return self._union_reader(schema, namespace)
        if not isinstance(schema, dict) or "logicalType" in schema:
            raise _UnsupportedError
        kind = schema.get("type")
        if kind in PRIMITIVE_READERS:
            return PRIMITIVE_READERS[kind]
        if kind in ("record", "error", "enum", "fixed"):
            name = self._define(schema, namespace)
            return self._named_reader(name)
        if kind == "array":
            return self._array_reader(schema["items"], namespace), 1
        if kind == "map":
            return self._map_reader(schema["values"], namespace), 1
        raise _UnsupportedError

    def writer(self, schema: Any, namespace: str) -> Put:
        """The writer of ``schema``."""
        if isinstance(schema, str):
            if schema in PRIMITIVE_WRITERS:
                return PRIMITIVE_WRITERS[schema]
            return self._named_writer(self._full(schema, namespace))
        if isinstance(schema, list):
            return self._union_writer(schema, namespace)
        if not isinstance(schema, dict) or "logicalType" in schema:
            raise _UnsupportedError
        kind = schema.get("type")
        if kind in PRIMITIVE_WRITERS:
            return PRIMITIVE_WRITERS[kind]
        if kind in ("record", "error", "enum", "fixed"):
            return self._named_writer(self._define(schema, namespace))
        if kind == "array":
            return self._array_writer(schema["items"], namespace)
        if kind == "map":
            return self._map_writer(schema["values"], namespace)
        raise _UnsupportedError

    # -- named types ------------------------------------------------------------

    @staticmethod
    def _full(name: str, namespace: str) -> str:
        return name if "." in name or not namespace else f"{namespace}.{name}"

    def _define(self, schema: dict[str, Any], namespace: str) -> str:
        name = schema.get("name")
        if not isinstance(name, str):
            raise _UnsupportedError
        full = self._full(name, schema.get("namespace") or namespace)
        self._named.setdefault(full, schema)
        return full

    def _named_reader(self, full: str) -> tuple[Reader, int]:
        done = self._readers.get(full)
        if done is not None:
            return done
        schema = self._named.get(full)
        if schema is None:
            raise _UnsupportedError  # unknown, or recursive (named while being built)
        del self._named[full]
        namespace = full.rpartition(".")[0]
        kind = schema["type"]
        if kind == "enum":
            built = _enum_reader(schema["symbols"]), 1
        elif kind == "fixed":
            built = _fixed_reader(int(schema["size"])), 1
        else:
            built = self._record_reader(schema["fields"], namespace)
        self._readers[full] = built
        return built

    def _named_writer(self, full: str) -> Put:
        done = self._writers.get(full)
        if done is not None:
            return done
        schema = self._named.get(full)
        if schema is None:
            raise _UnsupportedError
        del self._named[full]
        namespace = full.rpartition(".")[0]
        kind = schema["type"]
        if kind == "enum":
            built = _enum_writer(schema["symbols"])
        elif kind == "fixed":
            built = _fixed_writer(int(schema["size"]))
        else:
            built = self._record_writer(schema["fields"], namespace)
        self._writers[full] = built
        return built

    # -- records, arrays, maps, unions -------------------------------------------

    def _record_reader(self, fields: list[dict[str, Any]], namespace: str) -> tuple[Reader, int]:
        parts = [(f["name"], *self.reader(f["type"], namespace)) for f in fields]
        readers = [(name, read) for name, read, _ in parts]

        def read_record(data: bytes, i: int) -> tuple[dict[str, Any], int]:
            value = {}
            for name, read in readers:
                value[name], i = read(data, i)
            return value, i

        return read_record, sum(least for _, _, least in parts)

    def _record_writer(self, fields: list[dict[str, Any]], namespace: str) -> Put:
        writers = [(f["name"], self.writer(f["type"], namespace)) for f in fields]
        size = len(writers)
        defaults = {f["name"]: f["default"] for f in fields if "default" in f}

        def put_record(value: Any, out: bytearray) -> None:
            if type(value) is not dict:
                raise MisfitError
            if len(value) == size:  # the schema's fields (or an extra one: a KeyError)
                for name, put in writers:
                    put(value[name], out)
                return
            # Fields left out take their defaults, as fastavro fills them in; an extra one
            # (or a missing one without a default) is fastavro's to explain.
            known = 0
            for name, put in writers:
                if name in value:
                    known += 1
                    put(value[name], out)
                else:
                    put(defaults[name], out)
            if known != len(value):
                raise MisfitError

        return put_record

    def _array_reader(self, items: Any, namespace: str) -> Reader:
        number = items.get("type") if isinstance(items, dict) and len(items) == 1 else items
        if number in ("float", "double"):
            return _numbers_reader("f" if number == "float" else "d")
        read, least = self.reader(items, namespace)
        if least == 0:
            raise _UnsupportedError  # a corrupt count could make us loop without reading

        def read_array(data: bytes, i: int) -> tuple[list[Any], int]:
            values: list[Any] = []
            while True:
                count, i = _block(data, i, least)
                if not count:
                    return values, i
                for _ in range(count):
                    value, i = read(data, i)
                    values.append(value)

        return read_array

    def _array_writer(self, items: Any, namespace: str) -> Put:
        put = self.writer(items, namespace)

        def put_array(value: Any, out: bytearray) -> None:
            if type(value) is not list:
                raise MisfitError
            if value:
                put_long(len(value), out)
                for item in value:
                    put(item, out)
            out.append(0)

        return put_array

    def _map_reader(self, values: Any, namespace: str) -> Reader:
        read, _ = self.reader(values, namespace)

        def read_map(data: bytes, i: int) -> tuple[dict[str, Any], int]:
            mapping: dict[str, Any] = {}
            while True:
                count, i = _block(data, i, 1)
                if not count:
                    return mapping, i
                for _ in range(count):
                    key, i = read_string(data, i)
                    mapping[key], i = read(data, i)

        return read_map

    def _map_writer(self, values: Any, namespace: str) -> Put:
        put = self.writer(values, namespace)

        def put_map(value: Any, out: bytearray) -> None:
            if type(value) is not dict:
                raise MisfitError
            if value:
                put_long(len(value), out)
                for key, item in value.items():
                    put_string(key, out)
                    put(item, out)
            out.append(0)

        return put_map

    def _union_reader(self, branches: list[Any], namespace: str) -> tuple[Reader, int]:
        null, other = _null_union(branches)
        read, _ = self.reader(branches[other], namespace)

        def read_union(data: bytes, i: int) -> tuple[Any, int]:
            branch, i = read_long(data, i)
            if branch == null:
                return None, i
            if branch == other:
                return read(data, i)
            raise ValueError(f"union branch {branch} is not 0 or 1")

        return read_union, 1

    def _union_writer(self, branches: list[Any], namespace: str) -> Put:
        null, other = _null_union(branches)
        put = self.writer(branches[other], namespace)
        null_byte, other_byte = 2 * null, 2 * other  # zig-zag of 0 and 1

        def put_union(value: Any, out: bytearray) -> None:
            if value is None:
                out.append(null_byte)
            else:
                out.append(other_byte)
                put(value, out)

        return put_union


def _null_union(branches: list[Any]) -> tuple[int, int]:
    """The indexes of ``null`` and of the other branch of a two-branch union."""
    if len(branches) != 2 or "null" not in branches or branches[0] == branches[1]:
        raise _UnsupportedError
    null = branches.index("null")
    return null, 1 - null


def _block(data: bytes, i: int, least: int) -> tuple[int, int]:
    """An array or map block's item count (a negative one is followed by its byte size)."""
    count, i = read_long(data, i)
    if count < 0:
        count = -count
        _, i = read_long(data, i)
    if count * least > len(data) - i:
        raise ValueError(f"a block of {count} items at {i} does not fit in {len(data)} bytes")
    return count, i


def _numbers_reader(code: str) -> Reader:
    """An array of floats or doubles: each block unpacked at once."""
    width = struct.calcsize(code)

    def read_numbers(data: bytes, i: int) -> tuple[list[float], int]:
        values: list[float] = []
        while True:
            count, i = _block(data, i, width)
            if not count:
                return values, i
            values.extend(struct.unpack_from(f"<{count}{code}", data, i))
            i += count * width

    return read_numbers


def _enum_reader(symbols: list[str]) -> Reader:
    names = tuple(symbols)

    def read_enum(data: bytes, i: int) -> tuple[str, int]:
        index, i = read_long(data, i)
        if not 0 <= index < len(names):
            raise ValueError(f"enum index {index} is not one of {len(names)} symbols")
        return names[index], i

    return read_enum


def _enum_writer(symbols: list[str]) -> Put:
    indexes = {symbol: index for index, symbol in enumerate(symbols)}

    def put_enum(value: Any, out: bytearray) -> None:
        index = indexes.get(value) if type(value) is str else None
        if index is None:
            raise MisfitError
        put_long(index, out)

    return put_enum


def _fixed_reader(size: int) -> Reader:
    def read_fixed(data: bytes, i: int) -> tuple[bytes, int]:
        end = i + size
        if end > len(data):
            raise ValueError(f"{size} fixed bytes at {i} do not fit in {len(data)}")
        return data[i:end], end

    return read_fixed


def _fixed_writer(size: int) -> Put:
    def put_fixed(value: Any, out: bytearray) -> None:
        if type(value) is not bytes or len(value) != size:
            raise MisfitError
        out += value

    return put_fixed
