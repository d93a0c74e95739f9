"""The compiled Avro readers and writers against fastavro, on random schemas and values."""

from __future__ import annotations

import io
import math
import struct
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from alto_stream import avro_fast
from alto_stream.codec import Codec

_PRIMITIVES = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"]
_names = iter(range(10**9))


def _value_of(schema: Any) -> st.SearchStrategy[Any]:
    """Values that fit ``schema`` exactly (the types the compiled writer takes)."""
    if isinstance(schema, list):
        other = schema[1 - schema.index("null")]
        return st.one_of(st.none(), _value_of(other))
    kind = schema if isinstance(schema, str) else schema["type"]
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "int":
        return st.integers(-(2**31), 2**31 - 1)
    if kind == "long":
        return st.integers(-(2**63), 2**63 - 1)
    if kind == "float":  # values a float32 holds exactly, as fastavro reads them back
        return st.floats(width=32, allow_nan=False)
    if kind == "double":
        return st.floats(allow_nan=False)
    if kind == "bytes":
        return st.binary(max_size=40)
    if kind == "string":
        return st.text(max_size=40)
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "fixed":
        return st.binary(min_size=schema["size"], max_size=schema["size"])
    if kind == "array":
        return st.lists(_value_of(schema["items"]), max_size=6)
    if kind == "map":
        return st.dictionaries(st.text(max_size=8), _value_of(schema["values"]), max_size=5)
    fields = schema["fields"]
    return st.fixed_dictionaries({f["name"]: _value_of(f["type"]) for f in fields})


def _named(kind: str) -> dict[str, Any]:
    return {"type": kind, "name": f"T{next(_names)}", "namespace": "t"}


def _schemas() -> st.SearchStrategy[Any]:
    leaf = st.one_of(
        st.sampled_from(_PRIMITIVES),
        st.builds(lambda: {**_named("enum"), "symbols": ["A", "B", "C"]}),
        st.builds(lambda size: {**_named("fixed"), "size": size}, st.integers(1, 6)),
    )

    def extend(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        non_null = inner.filter(lambda s: s != "null" and not isinstance(s, list))
        return st.one_of(
            st.builds(lambda t: {"type": "array", "items": t}, non_null),
            st.builds(lambda t: {"type": "map", "values": t}, inner),
            st.builds(
                lambda t, first: ["null", t] if first else [t, "null"], non_null, st.booleans()
            ),
            st.builds(
                lambda ts: {
                    **_named("record"),
                    "fields": [{"name": f"f{i}", "type": t} for i, t in enumerate(ts)],
                },
                st.lists(inner, min_size=1, max_size=4),
            ),
        )

    fields = st.recursive(leaf, extend, max_leaves=8)
    return st.builds(
        lambda ts: {
            **_named("record"),
            "fields": [{"name": f"f{i}", "type": t} for i, t in enumerate(ts)],
        },
        st.lists(fields, min_size=1, max_size=5),
    )


def _fastavro_bytes(schema: Any, value: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema, named_schemas={}), value)
    return buf.getvalue()


def _fastavro_value(schema: Any, data: bytes) -> Any:
    buf = io.BytesIO(data)
    value = fastavro.schemaless_reader(buf, fastavro.parse_schema(schema, named_schemas={}), None)
    assert buf.tell() == len(data), "fastavro left bytes unread"
    return value


def _same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN (a float32 read of random bytes may be one)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@st.composite
def _schema_and_value(draw: st.DrawFn) -> tuple[Any, Any]:
    schema = draw(_schemas())
    return schema, draw(_value_of(schema))


_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(_schema_and_value())
def test_compiled_writer_writes_what_fastavro_writes(case: tuple[Any, Any]) -> None:
    schema, value = case
    write = avro_fast.compile_writer(schema)
    assert write is not None, "every generated schema is one the compiler supports"
    assert write(value) == _fastavro_bytes(schema, value)


@_SETTINGS
@given(_schema_and_value())
def test_compiled_reader_reads_what_fastavro_reads(case: tuple[Any, Any]) -> None:
    schema, value = case
    read = avro_fast.compile_reader(schema)
    assume(read is not None)  # None only for arrays of zero-byte items (see the test below)
    assert read is not None
    data = _fastavro_bytes(schema, value)
    got, end = read(data, 0)
    assert end == len(data)
    assert _same(got, _fastavro_value(schema, data))


@_SETTINGS
@given(_schema_and_value(), st.data())
def test_corrupt_bytes_read_as_fastavro_reads_them_or_raise(
    case: tuple[Any, Any], data: st.DataObject
) -> None:
    schema, value = case
    good = _fastavro_bytes(schema, value)
    assume(good)
    at = data.draw(st.integers(0, len(good) - 1))
    bad = bytearray(good)
    bad[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        bad = bad[: data.draw(st.integers(0, len(bad)))]
    read = avro_fast.compile_reader(schema)
    assume(read is not None)
    assert read is not None
    try:
        got, end = read(bytes(bad), 0)
    except avro_fast.READ_ERRORS:
        return  # the codec then asks fastavro, which reads it or says what is wrong
    if end != len(bad):
        return  # trailing bytes: the codec asks fastavro too
    assert _same(got, _fastavro_value(schema, bytes(bad)))


_MISFITS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=5),
    st.binary(max_size=5),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
)


@_SETTINGS
@given(_schemas(), st.data())
def test_a_value_the_compiled_writer_takes_is_one_fastavro_writes_the_same(
    schema: Any, data: st.DataObject
) -> None:
    write = avro_fast.compile_writer(schema)
    assert write is not None
    value = {
        f["name"]: data.draw(st.one_of(_value_of(f["type"]), _MISFITS)) for f in schema["fields"]
    }
    try:
        written = write(value)
    except avro_fast.MisfitError:
        return  # fastavro decides
    assert written == _fastavro_bytes(schema, value)


@pytest.mark.parametrize(
    "schema",
    [
        {
            "type": "record",
            "name": "L",
            "fields": [{"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}}],
        },
        {"type": "record", "name": "U", "fields": [{"name": "u", "type": ["int", "string"]}]},
        {"type": "record", "name": "R", "fields": [{"name": "next", "type": ["null", "R"]}]},
    ],
    ids=["logical type", "union of two non-null types", "recursive"],
)
def test_schemas_only_fastavro_handles_get_no_compiled_functions(schema: dict[str, Any]) -> None:
    assert avro_fast.compile_reader(schema) is None
    assert avro_fast.compile_writer(schema) is None


def test_arrays_of_zero_byte_items_are_read_by_fastavro() -> None:
    # A corrupt count could make a compiled reader loop without reading a byte.
    schema = {
        "type": "record",
        "name": "N",
        "fields": [{"name": "n", "type": {"type": "array", "items": "null"}}],
    }
    assert avro_fast.compile_reader(schema) is None
    write = avro_fast.compile_writer(schema)
    assert write is not None
    assert write({"n": [None, None]}) == _fastavro_bytes(schema, {"n": [None, None]})


def test_every_alto_payload_schema_is_compiled() -> None:
    registry = Codec().registry
    for name in registry.names():
        schema = registry.get(name)
        assert schema.read_fast is not None and schema.write_fast is not None, name


def test_the_codec_falls_back_to_fastavro_for_values_of_other_types() -> None:
    codec = Codec()
    # An int for a float: fastavro converts it; the compiled writer leaves it to fastavro.
    value = {"id": "p", "title": "t", "text": "x", "score": 1}
    data = codec.encode("alto.Passage", value)
    assert data == _fastavro_bytes(codec.registry.get("alto.Passage").raw, value)
    decoded = codec.decode(data, codec.registry.get("alto.Passage").fingerprint)
    assert decoded == {**value, "score": 1.0}
    # A missing field with a default: fastavro fills it in.
    assert codec.decode(
        codec.encode("alto.Embedding", {"text": "a", "vector": [0.5]}),
        codec.registry.get("alto.Embedding").fingerprint,
    ) == {"text": "a", "vector": [0.5], "model": ""}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("alto.Answer", {"text": "a"}),
        ("alto.Verdict", {"claim": "c", "label": "SUPPORTED", "score": 1}),
        ("alto.Embedding", {"text": "a", "vector": [1, 0.5]}),
        ("alto.Passage", {"id": "p", "title": "t", "text": "x", "score": -3}),
    ],
)
def test_ints_for_doubles_and_left_out_defaults_are_written_as_fastavro_writes_them(
    name: str, value: dict[str, Any]
) -> None:
    schema = Codec().registry.get(name)
    assert schema.write_fast is not None
    assert schema.write_fast(value) == _fastavro_bytes(schema.raw, value)


@pytest.mark.parametrize(
    "value",
    [{"text": "a", "extra": 1}, {"sources": []}, {"text": "a", "metadata": {}, "x": 1, "y": 2}],
)
def test_extra_or_missing_fields_are_left_to_fastavro(value: dict[str, Any]) -> None:
    schema = Codec().registry.get("alto.Answer")
    assert schema.write_fast is not None
    with pytest.raises(avro_fast.MisfitError):
        schema.write_fast(value)


def test_float_arrays_read_in_blocks() -> None:
    schema = {
        "type": "record",
        "name": "V",
        "fields": [{"name": "v", "type": {"type": "array", "items": "float"}}],
    }
    values = [float(struct.unpack("<f", struct.pack("<f", x / 7))[0]) for x in range(384)]
    data = _fastavro_bytes(schema, {"v": values})
    read = avro_fast.compile_reader(schema)
    assert read is not None
    assert read(data, 0) == ({"v": values}, len(data))
