"""One version of a named Avro schema, parsed: its fingerprint, canonical form and compiled code.

With :mod:`alto_stream.codec`, the only module that imports fastavro (its parser,
canonical form and CRC-64-AVRO fingerprint); the registry
(:mod:`alto_stream.registry`) makes a :class:`Schema` of each version it loads,
the codec reads and writes with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import fastavro
from fastavro.schema import fingerprint as _fingerprint
from fastavro.schema import to_parsing_canonical_form

from alto_stream import avro_check, avro_fast
from alto_stream.avro_defaults import decoded_defaults
from alto_stream.avro_names import top_name
from alto_stream.errors import SchemaError

__all__ = ["Schema"]


@dataclass(frozen=True)
class Schema:
    """One version of a named Avro schema.

    ``raw`` is the self-contained JSON form (every referenced type inlined, names
    fully qualified): hand it to any Avro implementation. ``fingerprint`` is the
    8-byte little-endian CRC-64-AVRO of its parsing canonical form, as in the
    Avro single-object encoding.
    """

    name: str
    fingerprint: bytes
    parsed: Any = field(compare=False, repr=False)
    raw: dict[str, Any] = field(compare=False, repr=False)
    canonical_form: str = field(default="", compare=False, repr=False)
    # Compiled reader and writer (see alto_stream.avro_fast), tried before fastavro; None
    # for schemas only fastavro handles.
    read_fast: avro_fast.Reader | None = field(default=None, compare=False, repr=False)
    write_fast: avro_fast.Writer | None = field(default=None, compare=False, repr=False)
    # Why a value does not fit (checked before fastavro's writer, which casts what it gets).
    misfit: avro_check.ValueCheck | None = field(default=None, compare=False, repr=False)

    @property
    def fingerprint_hex(self) -> str:
        """The fingerprint as 16 hex digits (as in history file names)."""
        return self.fingerprint.hex()

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> Schema:
        """Parse a self-contained named schema; :class:`SchemaError` if it is not valid Avro."""
        name = top_name(raw, "schema")
        resolved = decoded_defaults(raw)
        try:
            parsed = fastavro.parse_schema(raw, named_schemas={})  # checks the defaults too
            canonical = to_parsing_canonical_form(parsed)
            if resolved is not raw:
                # Written and read with bytes and fixed defaults as bytes, not their JSON text
                # (fastavro's parser wants the text, its writer and reader the bytes).
                parsed = fastavro.parse_schema(
                    resolved, named_schemas={}, _ignore_default_error=True
                )
        except Exception as exc:  # fastavro's parser raises many types; report them as one
            raise SchemaError(f"invalid Avro schema {name}: {type(exc).__name__}: {exc}") from exc
        fingerprint = bytes.fromhex(_fingerprint(canonical, "CRC-64-AVRO"))
        return cls(
            name,
            fingerprint,
            parsed,
            raw,
            canonical,
            avro_fast.compile_reader(resolved),
            avro_fast.compile_writer(resolved),
            avro_check.ValueCheck(raw),
        )
