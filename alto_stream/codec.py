"""Avro for payloads and headers: the codec that encodes and decodes records.

With :mod:`alto_stream.schema`, the only module that imports fastavro. A
:class:`Codec` writes a value with the current version of a schema of its
:class:`SchemaRegistry` (:mod:`alto_stream.registry`, re-exported here with
:class:`Schema` and :data:`HISTORY_DIR`) and reads records written with any
version it knows, resolving them to the current one by the Avro rules. The
compiled readers and writers (:mod:`alto_stream.avro_fast`) go first; fastavro
takes what they do not.

>>> codec = Codec()
>>> data = codec.encode("alto.Text", {"text": "hello"})
>>> codec.decode(data, codec.registry.get("alto.Text").fingerprint)
{'text': 'hello'}
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import fastavro
from fastavro.read import SchemaResolutionError

from alto_stream import avro_check, avro_fast
from alto_stream.errors import DecodeError, SchemaError
from alto_stream.registry import HISTORY_DIR, SchemaRegistry
from alto_stream.schema import Schema

__all__ = [
    "HISTORY_DIR",
    "SINGLE_OBJECT_MAGIC",
    "Codec",
    "Schema",
    "SchemaRegistry",
]

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
"""The two bytes that open an Avro single-object encoding (then the 8-byte fingerprint)."""

_HEADER_LEN = len(SINGLE_OBJECT_MAGIC) + 8
_BYTES = (bytes, bytearray, memoryview)
# Value errors fastavro's writer raises for a value that does not fit its schema.
_ENCODE_ERRORS = (TypeError, ValueError, AttributeError, KeyError, OverflowError, struct.error)


class Codec:
    """Encodes values with the current version of a schema; decodes any known version."""

    def __init__(self, registry: SchemaRegistry | None = None) -> None:
        self.registry = registry if registry is not None else SchemaRegistry()

    def encode(self, name: str, value: Mapping[str, Any]) -> bytes:
        """Avro binary of ``value`` (no header); :class:`SchemaError` names a misfit field."""
        schema = self.registry._current.get(name) or self.registry.get(name)
        return self._write(schema, value)

    def encode_single(self, name: str, value: Mapping[str, Any]) -> bytes:
        """Avro single-object encoding: ``C3 01``, the writer's 8-byte fingerprint, the body."""
        schema = self.registry.get(name)
        return SINGLE_OBJECT_MAGIC + schema.fingerprint + self._write(schema, value)

    def decode(
        self,
        data: bytes,
        writer_fingerprint: bytes,
        reader_name: str | None = None,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> dict[str, Any]:
        """Read ``data`` written with the schema of ``writer_fingerprint`` as ``reader_name``.

        The reader defaults to the current version of the writer's schema. Every
        failure (unknown fingerprint, corrupt or truncated bytes, incompatible
        schemas) is a :class:`DecodeError` carrying topic, partition and offset.
        """
        writer = (
            self.registry._by_fp.get(writer_fingerprint)
            if type(writer_fingerprint) is bytes
            else None
        )
        # The common case first: the current version, read by its compiled reader.
        if writer is not None and self.registry._current.get(reader_name or writer.name) is writer:
            value = _read_compiled(writer, data, 0)
            if value is not None:
                return value
        where = _Where(topic, partition, offset)
        writer, reader = self._resolve(writer_fingerprint, reader_name, where)
        return self._read(data, 0, writer, reader, where)

    def decode_single(
        self,
        data: bytes,
        reader_name: str | None = None,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> dict[str, Any]:
        """Read an Avro single-object encoding (see :meth:`encode_single`)."""
        where = _Where(topic, partition, offset)
        if not isinstance(data, _BYTES) or len(data) < _HEADER_LEN:
            raise where.error(
                f"expected an Avro single-object encoding (at least {_HEADER_LEN} bytes), "
                f"got {_short(data)}"
            )
        if data[:2] != SINGLE_OBJECT_MAGIC:
            raise where.error(
                f"expected an Avro single-object encoding starting with c301, "
                f"got {bytes(data[:2]).hex()}"
            )
        writer, reader = self._resolve(data[2:_HEADER_LEN], reader_name, where)
        return self._read(data, _HEADER_LEN, writer, reader, where)

    # -- internals ----------------------------------------------------------

    def _write(self, schema: Schema, value: Mapping[str, Any]) -> bytes:
        if schema.write_fast is not None:
            try:
                return schema.write_fast(value)
            except avro_fast.MisfitError:
                pass  # an int for a double, a default left out...: checked, then fastavro's
        # fastavro's writer casts what it is given (1.5 or True for a long is written as 1):
        # a value that does not fit exactly is refused here, in words that name the field.
        check = schema.misfit or avro_check.ValueCheck(schema.raw)
        problem = check(value)
        if problem is not None:
            raise SchemaError(_misfit_message(schema, problem))
        buf = BytesIO()
        try:
            fastavro.schemaless_writer(buf, schema.parsed, value, strict_allow_default=True)
        except _ENCODE_ERRORS as exc:
            raise SchemaError(_explain(schema, value, exc)) from exc
        return buf.getvalue()

    def _resolve(
        self, writer_fingerprint: bytes, reader_name: str | None, where: _Where
    ) -> tuple[Schema, Schema]:
        if not isinstance(writer_fingerprint, _BYTES):
            raise where.error(f"expected an 8-byte fingerprint, got {_short(writer_fingerprint)}")
        writer = self.registry._by_fp.get(bytes(writer_fingerprint))
        if writer is None:
            raise where.error(self.registry.unknown_fingerprint(bytes(writer_fingerprint)))
        if reader_name is None:
            return writer, self.registry._current.get(writer.name, writer)
        reader = self.registry._current.get(reader_name)
        if reader is None:
            raise where.error(
                f"unknown reader schema {reader_name!r}: expected one of "
                f"{', '.join(self.registry.names())}"
            )
        return writer, reader

    def _read(
        self, data: bytes, start: int, writer: Schema, reader: Schema, where: _Where
    ) -> dict[str, Any]:
        if reader is writer:
            compiled = _read_compiled(writer, data, start)
            if compiled is not None:
                return compiled
        try:
            buf = BytesIO(data)
            if start:
                buf.seek(start)
            reader_parsed = None if reader is writer else reader.parsed
            value = fastavro.schemaless_reader(buf, writer.parsed, reader_parsed)
            end, size = buf.tell(), len(data)
        except SchemaResolutionError as exc:
            if writer.name != reader.name:
                # fastavro's text is both parsed schemas, kilobytes of dicts: say it plainly.
                problem, fix = (
                    "Avro matches records by name",
                    f"write {reader.name} records here, or read this topic as {writer.name}",
                )
            else:
                problem = _short(str(exc), 300, quote=False)
                fix = "evolve schemas the Avro way (add fields with defaults, remove fields)"
            raise where.error(
                f"cannot read {writer.name} {writer.fingerprint_hex} as {reader.name} "
                f"{reader.fingerprint_hex}: {problem}; fix: {fix}"
            ) from exc
        except Exception as exc:  # corrupt input makes fastavro raise almost any type
            raise where.error(
                f"corrupt or truncated {writer.name} record ({type(exc).__name__}: {exc}): "
                f"expected Avro binary written with {writer.name} {writer.fingerprint_hex}"
            ) from exc
        if end != size:
            raise where.error(
                f"{size - end} trailing bytes after a {writer.name} record: expected exactly "
                "one record (corrupt data, or a wrong fingerprint header)"
            )
        if not isinstance(value, dict):
            raise where.error(f"schema {writer.name} is not a record: got {_short(value)}")
        return value


def _read_compiled(schema: Schema, data: bytes, start: int) -> dict[str, Any] | None:
    """The record in ``data`` read by ``schema``'s compiled reader; None: ask fastavro.

    None also for bytes it cannot read or that leave bytes over: fastavro then
    reads them, or says what is wrong with them.
    """
    if schema.read_fast is None or type(data) is not bytes:
        return None
    try:
        value, end = schema.read_fast(data, start)
    except avro_fast.READ_ERRORS:
        return None
    return value if end == len(data) else None


@dataclass(slots=True)  # not frozen: built for every decoded record, a plain __init__ is cheaper
class _Where:
    topic: str | None
    partition: int | None
    offset: int | None

    def error(self, message: str) -> DecodeError:
        return DecodeError(message, topic=self.topic, partition=self.partition, offset=self.offset)


def _short(value: object, limit: int = 120, *, quote: bool = True) -> str:
    text = repr(value) if quote else str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _explain(schema: Schema, value: Mapping[str, Any], exc: Exception) -> str:
    """Why fastavro refused ``value`` (that :func:`avro_check.misfit` passed), in one line."""
    return _misfit_message(schema, f"{type(exc).__name__}: {_short(str(exc), 200, quote=False)}")


def _misfit_message(schema: Schema, problem: str) -> str:
    return (
        f"value does not fit schema {schema.name}: {problem}; "
        f"fix: make the value match {schema.name} (see its .avsc)"
    )
