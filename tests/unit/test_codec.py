"""The schema registry and the Avro codec: round trips, evolution, and failure modes."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alto_stream.codec import SINGLE_OBJECT_MAGIC, Codec, Schema, SchemaRegistry
from alto_stream.errors import DecodeError, SchemaError

REPO_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
WHERE = {"topic": "t.in", "partition": 3, "offset": 42}

PAYLOADS = [
    "alto.Query",
    "alto.Text",
    "alto.Embedding",
    "alto.Passages",
    "alto.Answer",
    "alto.Verdict",
    "alto.Json",
    "alto.DeadLetter",
    "alto.Count",
]


# -- a hypothesis strategy for any (self-contained) Avro schema ---------------

_PRIMITIVE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(width=32, allow_nan=False),
    "double": st.floats(allow_nan=False),
    "bytes": st.binary(max_size=24),
    "string": st.text(max_size=24),
}


def avro_values(schema: Any, named: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """Values that fit ``schema`` (the self-contained JSON form, as in ``Schema.raw``)."""
    named = {} if named is None else named
    if isinstance(schema, str):
        return _PRIMITIVE_VALUES[schema] if schema in _PRIMITIVE_VALUES else named[schema]
    if isinstance(schema, list):
        return st.one_of([avro_values(branch, named) for branch in schema])
    kind = schema["type"]
    if kind == "record":
        fields = {f["name"]: avro_values(f["type"], named) for f in schema["fields"]}
        named[schema["name"]] = st.fixed_dictionaries(fields)
    elif kind == "enum":
        named[schema["name"]] = st.sampled_from(schema["symbols"])
    elif kind == "fixed":
        named[schema["name"]] = st.binary(min_size=schema["size"], max_size=schema["size"])
    elif kind == "array":
        return st.lists(avro_values(schema["items"], named), max_size=4)
    elif kind == "map":
        return st.dictionaries(
            st.text(max_size=8), avro_values(schema["values"], named), max_size=4
        )
    else:
        return avro_values(kind, named)
    return named[schema["name"]]


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(SchemaRegistry(REPO_SCHEMAS))


def write_schema(directory: Path, raw: dict[str, Any]) -> None:
    name = raw["name"] if "." in raw["name"] else f"{raw['namespace']}.{raw['name']}"
    (directory / f"{name}.avsc").write_text(json.dumps(raw))


# -- the registry ----------------------------------------------------------


def test_registry_loads_every_schema_the_design_names(codec: Codec) -> None:
    names = codec.registry.names()
    for name in [*PAYLOADS, "alto.Ancestry", "alto.Frame", "alto.Kind", "alto.Passage"]:
        assert name in names
    assert names == sorted(names)


def test_default_registry_reads_the_checkout_schemas() -> None:
    assert SchemaRegistry().names() == SchemaRegistry(REPO_SCHEMAS).names()


def test_unknown_name_lists_the_known_ones(codec: Codec) -> None:
    with pytest.raises(SchemaError, match=r"alto\.Nope.*alto\.Answer.*alto\.Verdict"):
        codec.registry.get("alto.Nope")
    with pytest.raises(SchemaError, match=r"alto\.Nope"):
        codec.encode("alto.Nope", {})


def test_references_are_inlined_into_a_self_contained_schema(codec: Codec) -> None:
    raw = codec.registry.get("alto.Passages").raw
    items = raw["fields"][1]["type"]["items"]
    assert items["name"] == "alto.Passage"
    assert [f["name"] for f in items["fields"]] == ["id", "title", "text", "score"]
    ancestry = codec.registry.get("alto.Ancestry").raw
    assert {f["name"]: f["type"] for f in ancestry["fields"]}["kind"]["symbols"] == [
        "DATA",
        "END",
        "SKIP",
        "ERROR",
        "TIMEOUT",
    ]


def test_a_type_used_twice_is_defined_once_then_named(tmp_path: Path) -> None:
    write_schema(tmp_path, {"type": "enum", "name": "E", "namespace": "x", "symbols": ["A", "B"]})
    write_schema(
        tmp_path,
        {
            "type": "record",
            "name": "x.R",
            "fields": [{"name": "one", "type": "E"}, {"name": "two", "type": "x.E"}],
        },
    )
    raw = SchemaRegistry(tmp_path).get("x.R").raw
    assert raw["fields"][0]["type"]["name"] == "x.E"
    assert raw["fields"][1]["type"] == "x.E"
    codec = Codec(SchemaRegistry(tmp_path))
    data = codec.encode("x.R", {"one": "A", "two": "B"})
    assert codec.decode(data, codec.registry.get("x.R").fingerprint) == {"one": "A", "two": "B"}


def _rabin(data: bytes) -> bytes:
    """CRC-64-AVRO exactly as the Avro specification writes it."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little")


@pytest.mark.parametrize("name", SchemaRegistry(REPO_SCHEMAS).names())
def test_fingerprint_is_crc64_avro_of_the_canonical_form(codec: Codec, name: str) -> None:
    schema = codec.registry.get(name)
    assert len(schema.fingerprint) == 8
    assert schema.fingerprint == _rabin(schema.canonical_form.encode())
    assert codec.registry.by_fingerprint(schema.fingerprint) is schema


def test_schema_equality_is_name_and_fingerprint(codec: Codec) -> None:
    a = codec.registry.get("alto.Text")
    b = Schema.from_raw(a.raw)
    assert a == b
    assert hash(a) == hash(b)
    assert a != codec.registry.get("alto.Json")


def test_unknown_fingerprint_is_a_schema_error(codec: Codec) -> None:
    with pytest.raises(SchemaError, match="0000000000000000"):
        codec.registry.by_fingerprint(bytes(8))
    assert codec.registry.find(bytes(8)) is None


@pytest.mark.parametrize(
    ("file_name", "content", "message"),
    [
        ("x.A.avsc", "{not json", "cannot read"),
        ("x.A.avsc", '["string"]', "expected a JSON object"),
        ("x.A.avsc", '{"type": "record", "name": "B", "namespace": "x", "fields": []}', "x.B"),
        ("x.A.avsc", '{"type": "record", "name": "x.A", "fields": [{"name": "f"}]}', "expected"),
        (
            "x.A.avsc",
            '{"type": "record", "name": "x.A", "fields": [{"name": "f", "type": "x.Missing"}]}',
            "unknown type 'x.Missing'",
        ),
        (
            "x.A.avsc",
            '{"type": "record", "name": "x.A", "fields": [{"name": "f", "type": "int", '
            '"default": "nope"}]}',
            "invalid Avro schema x.A",
        ),
        ("x.A.avsc", '{"type": "string", "name": "x.A"}', "named schema"),
    ],
)
def test_bad_schema_files_are_schema_errors(
    tmp_path: Path, file_name: str, content: str, message: str
) -> None:
    (tmp_path / file_name).write_text(content)
    with pytest.raises(SchemaError, match=message):
        SchemaRegistry(tmp_path)


@pytest.mark.parametrize(
    ("field_type", "field", "meant"),
    [
        ('"strng"', "my.Doc.title", "string"),
        ('{"type": "array", "items": "doubel"}', "my.Doc.title", "double"),
        ('["null", "alto.Txt"]', "my.Doc.title", "alto.Text"),
    ],
)
def test_a_type_typo_names_the_file_the_field_and_the_type_it_resembles(
    tmp_path: Path, field_type: str, field: str, meant: str
) -> None:
    # Before: "unknown type 'my.strng' ... fix: add my.strng.avsc", naming neither.
    (tmp_path / "my.Doc.avsc").write_text(
        '{"type": "record", "name": "Doc", "namespace": "my", '
        f'"fields": [{{"name": "title", "type": {field_type}}}]}}'
    )
    registry = SchemaRegistry(REPO_SCHEMAS)
    with pytest.raises(SchemaError) as info:
        registry.add_directory(tmp_path)
    text = str(info.value)
    assert text.startswith(f"{tmp_path / 'my.Doc.avsc'}: field {field} has unknown type")
    assert f"did you mean {meant!r}?" in text


_ENUM_E = '{"type": "enum", "name": "E", "symbols": ["P", "Q"]}'


@pytest.mark.parametrize("defined_in", ["x.A", "x.B"])
def test_a_type_defined_inline_is_named_from_another_file_in_either_order(
    tmp_path: Path, defined_in: str
) -> None:
    # Before: x.B's reference to x.E failed ("did you mean 'x.B'?") when x.B.avsc was
    # read first (x.A defining E inline) and x.A's did when x.B defined it.
    user = "x.B" if defined_in == "x.A" else "x.A"
    (tmp_path / f"{defined_in}.avsc").write_text(
        f'{{"type": "record", "name": "{defined_in[2:]}", "namespace": "x", '
        f'"fields": [{{"name": "e", "type": {_ENUM_E}}}]}}'
    )
    (tmp_path / f"{user}.avsc").write_text(
        f'{{"type": "record", "name": "{user[2:]}", "namespace": "x", '
        '"fields": [{"name": "e", "type": "E"}, {"name": "f", "type": ["null", "x.E"]}]}'
    )
    registry = SchemaRegistry(REPO_SCHEMAS)
    assert registry.add_directory(tmp_path) == ["x.A", "x.B"]
    local = Codec(registry)
    schema = registry.get(user)
    assert schema.raw["fields"][0]["type"] == json.loads(_ENUM_E) | {"name": "x.E"}
    value = {"e": "Q", "f": "P"}
    assert local.decode(local.encode(user, value), schema.fingerprint) == value
    twin = SchemaRegistry(REPO_SCHEMAS)  # the same fingerprint as the self-contained form
    assert twin.register(schema.raw).fingerprint == schema.fingerprint


def test_an_inline_type_defined_twice_differently_names_both_files(tmp_path: Path) -> None:
    for name, symbols in (("A", '["P"]'), ("B", '["P", "Q"]')):
        (tmp_path / f"x.{name}.avsc").write_text(
            f'{{"type": "record", "name": "{name}", "namespace": "x", "fields": [{{"name": '
            f'"e", "type": {{"type": "enum", "name": "E", "symbols": {symbols}}}}}]}}'
        )
    with pytest.raises(SchemaError) as info:
        SchemaRegistry(REPO_SCHEMAS).add_directory(tmp_path)
    text = str(info.value)
    assert "x.E is defined twice, differently" in text
    assert "x.A.avsc" in text and "x.B.avsc" in text


def test_an_unknown_type_never_suggests_the_record_holding_it(tmp_path: Path) -> None:
    # Before: "did you mean 'x.B'? fix: write "type": "x.B"" for x.B's own field (the
    # namespace alone made them alike).
    (tmp_path / "x.B.avsc").write_text(
        '{"type": "record", "name": "B", "namespace": "x", '
        '"fields": [{"name": "e", "type": "x.E"}]}'
    )
    (tmp_path / "x.A.avsc").write_text(
        '{"type": "record", "name": "A", "namespace": "x", "fields": []}'
    )
    with pytest.raises(SchemaError) as info:
        SchemaRegistry(REPO_SCHEMAS).add_directory(tmp_path)
    text = str(info.value)
    assert "unknown type 'x.E'" in text
    assert "did you mean" not in text
    assert "fix: add x.E.avsc" in text


def test_missing_directory_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="ALTO_SCHEMAS_DIR"):
        SchemaRegistry(tmp_path / "absent")


def test_register_in_code_may_reference_file_types(codec: Codec) -> None:
    registry = SchemaRegistry(REPO_SCHEMAS)
    raw = {
        "type": "record",
        "name": "app.Ranked",
        "fields": [{"name": "best", "type": "alto.Passage"}, {"name": "rank", "type": "int"}],
    }
    schema = registry.register(raw)
    assert registry.get("app.Ranked") is schema
    assert registry.register(raw) == schema  # identical again: a no-op
    value = {"best": {"id": "p", "title": "t", "text": "x", "score": 0.5}, "rank": 1}
    local = Codec(registry)
    assert local.decode(local.encode("app.Ranked", value), schema.fingerprint) == value
    changed = {**raw, "fields": raw["fields"][:1]}
    with pytest.raises(SchemaError, match="already registered"):
        registry.register(changed)
    older = registry.register(changed, current=False)
    assert registry.get("app.Ranked") is schema
    assert registry.by_fingerprint(older.fingerprint) == older
    assert {s.fingerprint for s in registry.versions("app.Ranked")} == {
        schema.fingerprint,
        older.fingerprint,
    }
    assert "app.Ranked" not in codec.registry.names()  # registries are independent


# -- round trips -----------------------------------------------------------


@pytest.mark.parametrize("name", SchemaRegistry(REPO_SCHEMAS).names())
@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_round_trip_every_schema(codec: Codec, name: str, data: st.DataObject) -> None:
    schema = codec.registry.get(name)
    if schema.raw["type"] != "record":
        return  # enums are only parts of records
    value = data.draw(avro_values(schema.raw))
    encoded = codec.encode(name, value)
    assert codec.decode(encoded, schema.fingerprint, **WHERE) == value
    single = codec.encode_single(name, value)
    assert single == SINGLE_OBJECT_MAGIC + schema.fingerprint + encoded
    assert codec.decode_single(single) == value


def test_defaults_fill_missing_fields(codec: Codec) -> None:
    fp = codec.registry.get("alto.Answer").fingerprint
    assert codec.decode(codec.encode("alto.Answer", {"text": "a"}), fp) == {
        "text": "a",
        "sources": [],
        "metadata": {},
    }
    verdict = codec.decode(
        codec.encode("alto.Verdict", {"claim": "c", "label": "SUPPORTED"}),
        codec.registry.get("alto.Verdict").fingerprint,
    )
    assert verdict == {"claim": "c", "label": "SUPPORTED", "evidence": [], "score": 0.0}


BLOBS = {  # Avro writes a bytes or fixed default as a string of code points 0-255
    "type": "record",
    "name": "Job",
    "namespace": "my",
    "fields": [
        {"name": "title", "type": "string"},
        {"name": "blob", "type": "bytes", "default": ""},
        {"name": "mark", "type": "bytes", "default": "\u00ffA\u0000"},
        {"name": "id", "type": {"type": "fixed", "name": "Id", "size": 2}, "default": "\u00e9z"},
        {"name": "maybe", "type": ["bytes", "null"], "default": "\u0001"},
        {"name": "parts", "type": {"type": "array", "items": "bytes"}, "default": ["a", "\u0080"]},
        {
            "name": "inner",
            "type": {"type": "record", "name": "Inner", "fields": [{"name": "b", "type": "bytes"}]},
            "default": {"b": "\u00fe"},
        },
        {"name": "again", "type": "my.Inner", "default": {"b": "x"}},
    ],
}
BLOB_DEFAULTS = {
    "blob": b"",
    "mark": b"\xffA\x00",
    "id": b"\xe9z",
    "maybe": b"\x01",
    "parts": [b"a", b"\x80"],
    "inner": {"b": b"\xfe"},
    "again": {"b": b"x"},
}


def test_bytes_and_fixed_defaults_are_their_bytes(tmp_path: Path) -> None:
    # Found by a new user: a bytes field with "default": "" refused every value that
    # left it out (fastavro: a bytes-like object is required, not 'str').
    write_schema(tmp_path, BLOBS)
    codec = Codec(SchemaRegistry(tmp_path))
    schema = codec.registry.get("my.Job")
    assert codec.decode(codec.encode("my.Job", {"title": "t"}), schema.fingerprint) == {
        "title": "t",
        **BLOB_DEFAULTS,
    }
    assert schema.raw["fields"][1]["default"] == ""  # the JSON form stays JSON
    json.dumps(schema.raw)


def test_an_old_record_reads_with_the_bytes_defaults_of_a_new_field(tmp_path: Path) -> None:
    old = {**BLOBS, "fields": BLOBS["fields"][:1]}
    write_schema(tmp_path, old)
    v1 = Codec(SchemaRegistry(tmp_path))
    old_fp = v1.registry.get("my.Job").fingerprint
    old_bytes = v1.encode("my.Job", {"title": "t"})
    v1.registry.archive()
    write_schema(tmp_path, BLOBS)
    v2 = Codec(SchemaRegistry(tmp_path))
    assert v2.decode(old_bytes, old_fp) == {"title": "t", **BLOB_DEFAULTS}


def test_a_bytes_default_over_code_point_255_is_a_schema_error(tmp_path: Path) -> None:
    write_schema(tmp_path, {**BLOBS, "fields": [{"name": "b", "type": "bytes", "default": "€"}]})
    with pytest.raises(SchemaError, match=r"my.Job.b .*code points 0-255"):
        SchemaRegistry(tmp_path)


def test_embedding_vectors_are_float32(codec: Codec) -> None:
    fp = codec.registry.get("alto.Embedding").fingerprint
    out = codec.decode(codec.encode("alto.Embedding", {"text": "t", "vector": [0.1, 2.5]}), fp)
    assert out["vector"][1] == 2.5
    assert math.isclose(out["vector"][0], 0.1, rel_tol=1e-6)
    assert out["model"] == ""


# -- values that do not fit --------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [
        ("alto.Text", {"text": 3}, "text"),
        ("alto.Text", {}, "text"),
        ("alto.Text", {"text": "x", "extra": 1}, "extra"),
        ("alto.Count", {"n": "many"}, r"\bn\b"),
        ("alto.Passages", {"query": "q", "passages": [{"id": "1"}]}, "title"),
        (
            "alto.Passages",
            {"query": "q", "passages": [{"id": "1", "title": "t", "text": 5, "score": 1.0}]},
            r"alto\.Passage\.text",
        ),
        ("alto.Embedding", {"text": "t", "vector": ["x"]}, "vector"),
    ],
)
def test_encode_names_the_field_that_does_not_fit(
    codec: Codec, name: str, value: dict[str, Any], field: str
) -> None:
    with pytest.raises(SchemaError, match=field) as info:
        codec.encode(name, value)
    assert name in str(info.value)


# A record whose union of three branches gets no compiled writer: fastavro's path.
_LOOSE = {
    "type": "record",
    "name": "t.Loose",
    "fields": [
        {"name": "n", "type": ["null", "string", "long"]},
        {"name": "x", "type": ["null", "string", "double"], "default": None},
    ],
}


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("alto.Count", {"n": 1.5}, "alto.Count.n is 1.5, expected long"),
        ("alto.Count", {"n": 2.9}, "alto.Count.n is 2.9, expected long"),
        ("alto.Count", {"n": True}, "alto.Count.n is True, expected long"),
        ("alto.Count", {"n": 2.0}, "alto.Count.n is 2.0, expected long"),
        ("alto.Verdict", {"claim": "c", "label": "SUPPORTED", "score": True}, "score is True"),
        ("t.Loose", {"n": 1.5}, r"t\.Loose\.n is 1\.5, expected null or string or long"),
        ("t.Loose", {"n": False}, "t.Loose.n is False"),
        ("t.Loose", {"n": 1, "x": True}, "t.Loose.x is True"),
    ],
)
def test_a_float_or_bool_is_not_cut_to_an_integer(name: str, value: Any, message: str) -> None:
    # Before, fastavro's writer cast them: {"n": 1.5} and {"n": True} were written as {"n": 1}.
    registry = SchemaRegistry(REPO_SCHEMAS)
    registry.register(_LOOSE)
    with pytest.raises(SchemaError, match=message):
        Codec(registry).encode(name, value)


def test_ints_still_fit_a_double_and_big_ints_a_long(codec: Codec) -> None:
    registry = SchemaRegistry(REPO_SCHEMAS)
    fp = registry.register(_LOOSE).fingerprint
    local = Codec(registry)
    assert local.decode(local.encode("t.Loose", {"n": 2**62, "x": 3}), fp) == {"n": 2**62, "x": 3.0}
    verdict = {"claim": "c", "label": "SUPPORTED", "evidence": [], "score": 1}
    fp = codec.registry.get("alto.Verdict").fingerprint
    assert codec.decode(codec.encode("alto.Verdict", verdict), fp)["score"] == 1.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"txt": "oops"}, "alto.Text: missing field 'text' (string); unknown field 'txt';"),
        (
            "just a string",
            "alto.Text: expected a dict for alto.Text (field text: string), got str "
            "'just a string';",
        ),
        (["a"], "expected a dict for alto.Text (field text: string), got list ['a'];"),
    ],
)
def test_a_misfit_output_says_what_was_expected_in_one_short_line(
    codec: Codec, value: Any, message: str
) -> None:
    # Before: 'alto.Text.text is None, expected string' (the field was missing, the
    # unknown txt unnamed), or an empty path and fastavro's parsed schema dumped.
    with pytest.raises(SchemaError) as info:
        codec.encode("alto.Text", value)
    text = str(info.value)
    assert message in text
    assert "__fastavro" not in text and len(text) < 200 and "\n" not in text


def test_push_refuses_a_float_for_a_long() -> None:
    from alto_stream.errors import ConfigError
    from alto_stream.ops.queries import read_queries

    for raw, shown in [('{"n": 2.9}', "2.9"), ('{"n": true}', "True")]:
        with pytest.raises(ConfigError, match=f"alto.Count.n is {shown}, expected long"):
            read_queries([], raw, None, "alto.Count", Codec(SchemaRegistry(REPO_SCHEMAS)))


# -- decoding failures: always DecodeError, with where ---------------------


def assert_where(err: DecodeError) -> None:
    assert (err.topic, err.partition, err.offset) == ("t.in", 3, 42)
    assert "t.in[3]@42" in str(err)


def test_unknown_fingerprint_is_a_decode_error_with_where(codec: Codec) -> None:
    with pytest.raises(DecodeError, match="unknown writer schema fingerprint") as info:
        codec.decode(b"\x02x", b"\x01" * 8, **WHERE)
    assert_where(info.value)
    # Before, the fix named only history/: `tail` of an app's own topic (a TypedDict
    # schema) sent a new user there, where --app was what was missing.
    assert "--app module:attr" in str(info.value)


@pytest.mark.parametrize("fingerprint", [None, "ba8c97d3ef8e56e0", 8, b"short"])
def test_a_malformed_fingerprint_is_a_decode_error(codec: Codec, fingerprint: Any) -> None:
    with pytest.raises(DecodeError, match="fingerprint") as info:
        codec.decode(b"\x02x", fingerprint, **WHERE)
    assert_where(info.value)


def test_every_truncation_is_a_decode_error(codec: Codec) -> None:
    value = {"query": "q", "passages": [{"id": "1", "title": "t", "text": "é", "score": 0.5}]}
    data = codec.encode("alto.Passages", value)
    fp = codec.registry.get("alto.Passages").fingerprint
    for end in range(len(data)):
        with pytest.raises(DecodeError) as info:
            codec.decode(data[:end], fp, **WHERE)
        assert_where(info.value)


def test_trailing_bytes_are_a_decode_error(codec: Codec) -> None:
    data = codec.encode("alto.Text", {"text": "x"}) + b"\x00"
    with pytest.raises(DecodeError, match="1 trailing bytes") as info:
        codec.decode(data, codec.registry.get("alto.Text").fingerprint, **WHERE)
    assert_where(info.value)


def test_incompatible_reader_is_a_decode_error(codec: Codec) -> None:
    data = codec.encode("alto.Text", {"text": "x"})
    fp = codec.registry.get("alto.Text").fingerprint
    with pytest.raises(DecodeError, match=r"cannot read alto\.Text .* as alto\.Count") as info:
        codec.decode(data, fp, "alto.Count", **WHERE)
    assert_where(info.value)
    # Before: fastavro's text, both parsed schemas as dicts (a dead letter's error was
    # kilobytes of '__fastavro_parsed': True ...), and a fix about evolving schemas.
    assert "__fastavro" not in str(info.value) and len(str(info.value)) < 400
    assert "write alto.Count records here" in str(info.value)
    with pytest.raises(DecodeError, match="unknown reader schema") as info:
        codec.decode(data, fp, "alto.Nope", **WHERE)
    assert_where(info.value)


@pytest.mark.parametrize("data", [None, "text", 12, b"", b"\xc3", b"\xc3\x01" + b"\x00" * 7])
def test_decode_single_rejects_what_is_not_single_object(codec: Codec, data: Any) -> None:
    with pytest.raises(DecodeError) as info:
        codec.decode_single(data, **WHERE)
    assert_where(info.value)


def test_decode_single_checks_magic_and_fingerprint(codec: Codec) -> None:
    good = codec.encode_single("alto.Text", {"text": "x"})
    with pytest.raises(DecodeError, match="c301"):
        codec.decode_single(b"\x00\x01" + good[2:])
    with pytest.raises(DecodeError, match="unknown writer schema"):
        codec.decode_single(good[:2] + bytes(8) + good[10:])


@pytest.mark.parametrize("name", [*PAYLOADS, "alto.Ancestry"])
@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.binary(max_size=64))
def test_random_bytes_raise_only_decode_error(codec: Codec, name: str, junk: bytes) -> None:
    fp = codec.registry.get(name).fingerprint
    try:
        codec.decode(junk, fp, **WHERE)
    except DecodeError as err:
        assert_where(err)
    try:
        codec.decode_single(SINGLE_OBJECT_MAGIC + fp + junk, **WHERE)
    except DecodeError as err:
        assert_where(err)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, 10_000), flip=st.integers(1, 255))
def test_flipped_bytes_decode_or_raise_decode_error(codec: Codec, position: int, flip: int) -> None:
    value = {
        "stage": "s",
        "topic": "t",
        "partition": 1,
        "offset": 2,
        "error": "boom",
        "error_type": "ValueError",
        "time": 1.5,
        "key": b"k",
        "value": None,
        "headers": [{"key": "alto.fp", "value": b"\x00" * 8}],
    }
    data = bytearray(codec.encode("alto.DeadLetter", value))
    data[position % len(data)] ^= flip
    try:
        codec.decode(bytes(data), codec.registry.get("alto.DeadLetter").fingerprint, **WHERE)
    except DecodeError as err:
        assert_where(err)


# -- evolution ---------------------------------------------------------------

V1 = {
    "type": "record",
    "name": "Thing",
    "namespace": "ev",
    "fields": [
        {"name": "a", "type": "string"},
        {"name": "n", "type": "int"},
        {"name": "old", "type": "string", "default": "o"},
    ],
}
V2 = {  # "old" removed, "new" added with a default, n promoted from int to long
    "type": "record",
    "name": "Thing",
    "namespace": "ev",
    "fields": [
        {"name": "a", "type": "string"},
        {"name": "n", "type": "long"},
        {"name": "new", "type": {"type": "map", "values": "string"}, "default": {"k": "v"}},
    ],
}


def test_old_records_stay_readable_after_the_schema_file_changes(tmp_path: Path) -> None:
    write_schema(tmp_path, V1)
    v1 = Codec(SchemaRegistry(tmp_path))
    assert [p.name for p in v1.registry.archive()] == [
        f"ev.Thing.{v1.registry.get('ev.Thing').fingerprint_hex}.avsc"
    ]
    assert v1.registry.archive() == []  # idempotent
    old_fp = v1.registry.get("ev.Thing").fingerprint
    old_bytes = v1.encode("ev.Thing", {"a": "x", "n": 7, "old": "gone"})

    write_schema(tmp_path, V2)
    v2 = Codec(SchemaRegistry(tmp_path))
    assert v2.registry.get("ev.Thing").fingerprint != old_fp
    assert v2.registry.by_fingerprint(old_fp).raw["fields"][2]["name"] == "old"
    assert v2.decode(old_bytes, old_fp) == {"a": "x", "n": 7, "new": {"k": "v"}}
    assert v2.decode(old_bytes, old_fp, "ev.Thing") == {"a": "x", "n": 7, "new": {"k": "v"}}


def test_new_records_are_readable_by_an_old_reader_when_compatible(tmp_path: Path) -> None:
    v2_compatible = {**V2, "fields": [V2["fields"][0], V1["fields"][1], V2["fields"][2]]}
    write_schema(tmp_path, V1)
    v1 = Codec(SchemaRegistry(tmp_path))
    newer = v1.registry.register(v2_compatible, current=False)  # the reader learns the writer
    v2_bytes = _encode_with(newer, {"a": "x", "n": 3, "new": {}})
    assert v1.decode(v2_bytes, newer.fingerprint) == {"a": "x", "n": 3, "old": "o"}


def test_incompatible_evolution_is_a_decode_error(tmp_path: Path) -> None:
    write_schema(tmp_path, V2)
    v2 = Codec(SchemaRegistry(tmp_path))
    v2_bytes = v2.encode("ev.Thing", {"a": "x", "n": 2**40, "new": {}})
    write_schema(tmp_path, V1)  # long -> int is no promotion
    v1 = Codec(SchemaRegistry(tmp_path))
    v1.registry.register(V2, current=False)
    with pytest.raises(DecodeError, match=r"cannot read ev\.Thing") as info:
        v1.decode(v2_bytes, v2.registry.get("ev.Thing").fingerprint, **WHERE)
    assert_where(info.value)
    required = {**V1, "fields": [*V1["fields"], {"name": "must", "type": "int"}]}
    write_schema(tmp_path, required)
    strict = Codec(SchemaRegistry(tmp_path))
    strict.registry.register(V2, current=False)
    with pytest.raises(DecodeError, match=r"cannot read ev\.Thing"):
        strict.decode(v2_bytes, v2.registry.get("ev.Thing").fingerprint)


def test_a_snapshot_keeps_the_old_version_of_a_referenced_type(tmp_path: Path) -> None:
    inner = {"type": "record", "name": "ev.Inner", "fields": [{"name": "x", "type": "int"}]}
    outer = {
        "type": "record",
        "name": "ev.Outer",
        "fields": [{"name": "items", "type": {"type": "array", "items": "ev.Inner"}}],
    }
    write_schema(tmp_path, inner)
    write_schema(tmp_path, outer)
    v1 = Codec(SchemaRegistry(tmp_path))
    v1.registry.archive()
    old_fp = v1.registry.get("ev.Outer").fingerprint
    old_bytes = v1.encode("ev.Outer", {"items": [{"x": 1}, {"x": 2}]})
    inner2 = {**inner, "fields": [*inner["fields"], {"name": "y", "type": "string", "default": ""}]}
    write_schema(tmp_path, inner2)  # only the referenced file changes
    v2 = Codec(SchemaRegistry(tmp_path))
    assert v2.registry.get("ev.Outer").fingerprint != old_fp
    assert v2.decode(old_bytes, old_fp) == {"items": [{"x": 1, "y": ""}, {"x": 2, "y": ""}]}


def test_a_tampered_snapshot_is_refused(tmp_path: Path) -> None:
    write_schema(tmp_path, V1)
    [path] = SchemaRegistry(tmp_path).archive()
    path.write_text(json.dumps({**V1, "name": "ev.Thing", "doc": "same", "fields": []}))
    with pytest.raises(SchemaError, match="immutable"):
        SchemaRegistry(tmp_path)


def _encode_with(schema: Schema, value: dict[str, Any]) -> bytes:
    """Encode with a version that is not current, as an older or newer producer would."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema.parsed, value)
    return buf.getvalue()


# -- the shipped schemas/ stay evolvable -----------------------------------


def test_every_current_schema_has_a_history_snapshot() -> None:
    registry = SchemaRegistry(REPO_SCHEMAS)
    history = REPO_SCHEMAS / "history"
    missing = [
        f"{name}.{registry.get(name).fingerprint_hex}.avsc"
        for name in registry.names()
        if not (history / f"{name}.{registry.get(name).fingerprint_hex}.avsc").exists()
    ]
    assert not missing, (
        f"schemas changed without a snapshot: {missing}; check the change is compatible, then "
        "run: .venv/bin/python -c 'from alto_stream.codec import SchemaRegistry as R; "
        "print(R().archive())' and commit schemas/history/"
    )


@settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_archived_version_is_readable_by_the_current_one(
    codec: Codec, data: st.DataObject
) -> None:
    registry = codec.registry
    for name in registry.names():
        current = registry.get(name)
        if current.raw["type"] != "record":
            continue
        for old in registry.versions(name):
            value = data.draw(avro_values(old.raw), label=f"{name} {old.fingerprint_hex}")
            codec.decode(_encode_with(old, value), old.fingerprint, name)
