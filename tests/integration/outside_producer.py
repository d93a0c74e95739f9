"""An input record built from docs/wire-format.md alone, as a producer outside alto-stream would.

Nothing here imports alto_stream (a test checks it): the schemas and
fingerprints are read from the document, the bodies are written by the
official ``avro`` package, and the fingerprint is computed with the
document's CRC-64-AVRO recipe.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import avro.io
import avro.schema

DOC = Path(__file__).resolve().parents[2] / "docs" / "wire-format.md"

EMPTY = 0xC15D213AA4D7A795
TABLE: list[int] = []
for _i in range(256):
    _fp = _i
    for _ in range(8):
        _fp = (_fp >> 1) ^ (EMPTY & -(_fp & 1))
    TABLE.append(_fp)


def fingerprint(canonical_form: bytes) -> bytes:
    """CRC-64-AVRO, little-endian, as the document gives it."""
    fp = EMPTY
    for byte in canonical_form:
        fp = (fp >> 8) ^ TABLE[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little")


@dataclass(frozen=True)
class DocSchema:
    """A schema as the document prints it: canonical form and the fingerprint it states."""

    name: str
    canonical: str
    stated: bytes

    @property
    def parsed(self) -> avro.schema.Schema:
        return avro.schema.parse(self.canonical)


def doc_schemas(text: str | None = None) -> dict[str, DocSchema]:
    """Every ```json alto.X block of the document, with the fingerprint stated above it."""
    text = DOC.read_text() if text is None else text
    pattern = r"`(alto\.\w+)` \(fingerprint `([0-9a-f]{16})`"
    stated = {m[1]: bytes.fromhex(m[2]) for m in re.finditer(pattern, text)}
    blocks = re.findall(r"```json (alto\.\w+)\n(.*?)\n```", text, re.S)
    return {name: DocSchema(name, body.strip(), stated[name]) for name, body in blocks}


def avro_binary(schema: avro.schema.Schema, datum: Any) -> bytes:
    """The Avro binary encoding of ``datum`` (no header)."""
    buf = io.BytesIO()
    avro.io.DatumWriter(schema).write(datum, avro.io.BinaryEncoder(buf))
    return buf.getvalue()


def read_avro(schema: avro.schema.Schema, data: bytes) -> Any:
    """Read an Avro binary body written with ``schema``."""
    return avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(data)))


def query_record(
    payload: dict[str, Any],
    *,
    payload_schema: str,
    query_id: str,
    query_time: float,
    schema_header: str | None = None,
    stage_header: str | None = "outside",
    key: bytes | None = None,
) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """Key, value and headers of one query, by the document's three steps."""
    schemas = doc_schemas()
    body = schemas[payload_schema]
    ancestry = schemas["alto.Ancestry"]
    value = avro_binary(body.parsed, payload)  # step 1
    root = {
        "query_id": query_id,
        "query_time": query_time,
        "path": [],
        "kind": "DATA",
        "reason": None,
        "replay_of": None,
    }
    single_object = (
        b"\xc3\x01" + fingerprint(ancestry.canonical.encode()) + avro_binary(ancestry.parsed, root)
    )  # step 2
    headers = [
        ("alto.ancestry", single_object),
        ("alto.fp", fingerprint(body.canonical.encode())),
    ]  # step 3
    if schema_header is not None:
        headers.append(("alto.schema", schema_header.encode()))
    if stage_header is not None:
        headers.append(("alto.stage", stage_header.encode()))
    return key, value, headers
