"""Interoperability: what the codec writes, the official ``avro`` package reads, and back.

Consumers outside alto-stream (Java, Go, other Python) must be able to read our
topics given the ``.avsc`` files; this pins it down with a second, independent
Avro implementation.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import avro.io
import avro.name
import avro.schema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_codec import PAYLOADS, avro_values

from alto_stream.codec import SINGLE_OBJECT_MAGIC, Codec, SchemaRegistry

REPO_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
ALL = [*PAYLOADS, "alto.Ancestry"]


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(SchemaRegistry(REPO_SCHEMAS))


def official(codec: Codec, name: str) -> avro.schema.Schema:
    """The official package's parse of our self-contained schema."""
    return avro.schema.parse(json.dumps(codec.registry.get(name).raw))


def avro_read(schema: avro.schema.Schema, data: bytes) -> Any:
    decoder = avro.io.BinaryDecoder(io.BytesIO(data))
    return avro.io.DatumReader(schema).read(decoder)


def avro_write(schema: avro.schema.Schema, value: Any) -> bytes:
    buf = io.BytesIO()
    avro.io.DatumWriter(schema).write(value, avro.io.BinaryEncoder(buf))
    return buf.getvalue()


@pytest.mark.parametrize("name", ALL)
def test_official_package_computes_the_same_fingerprint(codec: Codec, name: str) -> None:
    assert official(codec, name).fingerprint("CRC-64-AVRO") == codec.registry.get(name).fingerprint


def test_the_avsc_files_themselves_parse_with_the_official_package(codec: Codec) -> None:
    """Referenced types resolve through avro's own name table, giving the same fingerprints."""
    pending = {
        p.name.removesuffix(".avsc"): json.loads(p.read_text()) for p in REPO_SCHEMAS.glob("*.avsc")
    }
    names = avro.name.Names()
    parsed: dict[str, avro.schema.Schema] = {}
    while pending:
        progress = False
        for name, raw in list(pending.items()):
            try:
                scratch = avro.name.Names()
                scratch.names = dict(names.names)
                avro.schema.make_avsc_object(raw, scratch)
            except avro.errors.SchemaParseException:
                continue  # depends on a file not parsed yet
            parsed[name] = avro.schema.make_avsc_object(raw, names)
            del pending[name]
            progress = True
        assert progress, f"unresolvable references in {sorted(pending)}"
    for name, schema in parsed.items():
        assert schema.fingerprint("CRC-64-AVRO") == codec.registry.get(name).fingerprint, name


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_codec_bytes_are_read_by_the_official_package(
    codec: Codec, name: str, data: st.DataObject
) -> None:
    value = data.draw(avro_values(codec.registry.get(name).raw))
    assert avro_read(official(codec, name), codec.encode(name, value)) == value


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_official_package_bytes_are_read_by_the_codec(
    codec: Codec, name: str, data: st.DataObject
) -> None:
    schema = codec.registry.get(name)
    value = data.draw(avro_values(schema.raw))
    written = avro_write(official(codec, name), value)
    assert written == codec.encode(name, value)  # one binary encoding per value
    assert codec.decode(written, schema.fingerprint) == value
    single = SINGLE_OBJECT_MAGIC + official(codec, name).fingerprint("CRC-64-AVRO") + written
    assert codec.decode_single(single) == value


def test_official_reader_resolves_an_older_writer(codec: Codec) -> None:
    """Evolution seen from the outside: an old writer, read with our current schema."""
    old_answer = {
        "type": "record",
        "name": "alto.Answer",
        "fields": [{"name": "text", "type": "string"}],
    }
    old = avro.schema.parse(json.dumps(old_answer))
    data = avro_write(old, {"text": "t"})
    reader = avro.io.DatumReader(old, official(codec, "alto.Answer"))
    expected = {"text": "t", "sources": [], "metadata": {}}
    assert reader.read(avro.io.BinaryDecoder(io.BytesIO(data))) == expected
    registry = SchemaRegistry(REPO_SCHEMAS)
    older = registry.register(old_answer, current=False)
    assert Codec(registry).decode(data, older.fingerprint) == expected
