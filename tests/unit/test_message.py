"""The message envelope and its Kafka form (value + headers)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alto_stream.ancestry import Ancestry, Frame, Kind
from alto_stream.codec import Codec, SchemaRegistry
from alto_stream.errors import AncestryError, DecodeError, SchemaError
from alto_stream.message import (
    HEADER_ANCESTRY,
    HEADER_FINGERPRINT,
    HEADER_SCHEMA,
    HEADER_STAGE,
    Envelope,
    MessageCodec,
)

REPO_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
WHERE = {"topic": "app.in", "partition": 1, "offset": 99}


@pytest.fixture(scope="module")
def mc() -> MessageCodec:
    return MessageCodec(Codec(SchemaRegistry(REPO_SCHEMAS)))


ROOT = Ancestry.root("q-1", query_time=1_700_000_000.25)
CHILD = ROOT.child("att1", 0).child("att2", 3, count=4)


def frames() -> st.SearchStrategy[tuple[Frame, ...]]:
    frame = st.builds(
        Frame,
        attempt=st.text(min_size=1, max_size=8),
        index=st.integers(0, 2**31 - 1),
        count=st.none() | st.integers(0, 2**31 - 1),
    )
    return st.lists(frame, max_size=5).map(tuple)


ancestries = st.builds(
    Ancestry,
    query_id=st.text(min_size=1, max_size=12),
    query_time=st.floats(allow_nan=False),
    path=frames(),
    kind=st.sampled_from(Kind),
    reason=st.none() | st.text(max_size=20),
    replay_of=st.none() | st.text(min_size=1, max_size=12),
)


def header_dict(headers: list[tuple[str, bytes]]) -> dict[str, bytes]:
    return dict(headers)


# -- round trips -------------------------------------------------------------


def test_data_round_trip(mc: MessageCodec) -> None:
    env = Envelope(CHILD, {"text": "a sentence."}, "alto.Text", "splitter")
    value, headers = mc.encode(env)
    assert value is not None
    found = header_dict(headers)
    assert found[HEADER_SCHEMA] == b"alto.Text"
    assert found[HEADER_FINGERPRINT] == mc.codec.registry.get("alto.Text").fingerprint
    assert found[HEADER_STAGE] == b"splitter"
    assert found[HEADER_ANCESTRY][:2] == b"\xc3\x01"
    back = mc.decode(value, headers, **WHERE)
    assert back == env
    assert (back.kind, back.id, back.is_marker) == (Kind.DATA, CHILD.id, False)
    assert back.ancestry.ids == CHILD.ids


@pytest.mark.parametrize("kind", [Kind.SKIP, Kind.ERROR, Kind.TIMEOUT])
def test_marker_round_trip(mc: MessageCodec, kind: Kind) -> None:
    env = Envelope(CHILD.marker(kind, "because"), stage="filter")
    value, headers = mc.encode(env)
    assert value is None
    assert set(header_dict(headers)) == {HEADER_ANCESTRY, HEADER_STAGE}
    back = mc.decode(None, headers)
    assert back == env
    assert back.is_marker
    assert back.ancestry.reason == "because"


def test_end_marker_round_trip(mc: MessageCodec) -> None:
    env = Envelope(ROOT.end_marker("att9", 0))
    value, headers = mc.encode(env)
    assert value is None
    assert [k for k, _ in headers] == [HEADER_ANCESTRY]
    back = mc.decode(value, headers)
    assert back == env
    assert back.ancestry.path[-1] == Frame("att9", 0, 0)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ancestry=ancestries, text=st.text(max_size=30), stage=st.none() | st.text(max_size=10))
def test_any_ancestry_round_trips(
    mc: MessageCodec, ancestry: Ancestry, text: str, stage: str | None
) -> None:
    data = ancestry.kind is Kind.DATA
    env = Envelope(ancestry, {"text": text} if data else None, "alto.Text" if data else None, stage)
    value, headers = mc.encode(env)
    assert mc.decode_ancestry(headers) == ancestry  # what the tools read: any ancestry
    if not math.isfinite(ancestry.query_time) or (ancestry.kind is Kind.END and not ancestry.path):
        # No stage can run these: an infinite query time, an END that closes no split.
        with pytest.raises(DecodeError, match=r"query_time is|END marker with no frame"):
            mc.decode(value, headers, **WHERE)
        return
    back = mc.decode(value, headers, **WHERE)
    assert back == env
    assert back.ancestry.ids == ancestry.ids


def test_reader_schema_resolves_and_names_the_reader(mc: MessageCodec) -> None:
    registry = SchemaRegistry(REPO_SCHEMAS)
    registry.register(
        {"type": "record", "name": "alto.Text", "fields": [{"name": "text", "type": "string"}]}
    )
    short = {
        "type": "record",
        "name": "alto.Answer",
        "fields": [{"name": "text", "type": "string"}],
    }
    old = registry.register(short, current=False)
    local = MessageCodec(Codec(registry))
    value = local.codec.encode("alto.Text", {"text": "t"})
    headers = [
        (HEADER_ANCESTRY, local.encode_ancestry(ROOT)),
        (HEADER_SCHEMA, b"alto.Answer"),
        (HEADER_FINGERPRINT, old.fingerprint),
    ]
    back = local.decode(value, headers)  # an older alto.Answer, read as the current one
    assert back.schema == "alto.Answer"
    assert back.value == {"text": "t", "sources": [], "metadata": {}}


def test_foreign_headers_are_ignored_and_last_duplicate_wins(mc: MessageCodec) -> None:
    env = Envelope(CHILD, {"text": "x"}, "alto.Text", "s2")
    value, headers = mc.encode(env)
    noisy = [("traceparent", b"00-abc"), (HEADER_STAGE, b"s1"), *headers, ("other", None)]
    assert mc.decode(value, noisy) == env  # type: ignore[arg-type]


# -- what encode refuses -----------------------------------------------------


def test_marker_with_a_value_is_refused(mc: MessageCodec) -> None:
    with pytest.raises(AncestryError, match="SKIP marker carries no value"):
        mc.encode(Envelope(CHILD.marker(Kind.SKIP, "x"), {"text": "t"}, "alto.Text"))


def test_data_without_value_or_schema_is_refused(mc: MessageCodec) -> None:
    with pytest.raises(AncestryError, match="needs a value"):
        mc.encode(Envelope(CHILD))
    with pytest.raises(SchemaError, match="needs a schema name"):
        mc.encode(Envelope(CHILD, {"text": "t"}))
    with pytest.raises(SchemaError, match="text"):
        mc.encode(Envelope(CHILD, {"text": 1}, "alto.Text"))


def test_registry_without_the_ancestry_schema_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.A.avsc").write_text('{"type": "record", "name": "x.A", "fields": []}')
    with pytest.raises(SchemaError, match=r"alto\.Ancestry"):
        MessageCodec(Codec(SchemaRegistry(tmp_path)))


# -- what decode refuses: always DecodeError with where ---------------------


def good(mc: MessageCodec, env: Envelope | None = None) -> tuple[bytes | None, dict[str, bytes]]:
    value, headers = mc.encode(env or Envelope(CHILD, {"text": "x"}, "alto.Text", "s"))
    return value, header_dict(headers)


def decode_error(mc: MessageCodec, value: bytes | None, headers: dict[str, Any]) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        mc.decode(value, list(headers.items()), **WHERE)
    err = info.value
    assert (err.topic, err.partition, err.offset) == ("app.in", 1, 99)
    return err


def test_missing_ancestry_header(mc: MessageCodec) -> None:
    value, headers = good(mc)
    del headers[HEADER_ANCESTRY]
    assert "missing alto.ancestry header" in str(decode_error(mc, value, headers))
    with pytest.raises(DecodeError, match="missing"):
        mc.decode_ancestry(None)


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\xc3\x01", b"not avro at all", b"\xc3\x01" + bytes(8) + b"\x00"],
)
def test_garbled_ancestry_header(mc: MessageCodec, garbage: bytes) -> None:
    value, headers = good(mc)
    headers[HEADER_ANCESTRY] = garbage
    decode_error(mc, value, headers)


def test_ancestry_that_breaks_the_rules_is_a_decode_error(mc: MessageCodec) -> None:
    bad = ROOT.to_dict() | {"query_id": ""}  # valid Avro, invalid ancestry
    value, headers = good(mc)
    headers[HEADER_ANCESTRY] = mc.codec.encode_single("alto.Ancestry", bad)
    assert "garbled alto.ancestry" in str(decode_error(mc, value, headers))
    negative = ROOT.to_dict() | {"path": [{"attempt": "a", "index": -1, "count": None}]}
    headers[HEADER_ANCESTRY] = mc.codec.encode_single("alto.Ancestry", negative)
    decode_error(mc, value, headers)


def test_marker_with_a_value_is_a_decode_error(mc: MessageCodec) -> None:
    _, headers = good(mc, Envelope(CHILD.marker(Kind.SKIP, "r")))
    assert "SKIP marker must have no value" in str(decode_error(mc, b"\x02x", headers))


def test_data_without_value_is_a_decode_error(mc: MessageCodec) -> None:
    _, headers = good(mc)
    assert "needs a value" in str(decode_error(mc, None, headers))


def test_data_without_fingerprint_is_a_decode_error(mc: MessageCodec) -> None:
    value, headers = good(mc)
    del headers[HEADER_FINGERPRINT]
    assert "alto.fp" in str(decode_error(mc, value, headers))


def test_unknown_fingerprint_is_a_decode_error(mc: MessageCodec) -> None:
    value, headers = good(mc)
    headers[HEADER_FINGERPRINT] = b"\xff" * 8
    assert "unknown writer schema fingerprint" in str(decode_error(mc, value, headers))


def test_schema_header_contradicting_fingerprint(mc: MessageCodec) -> None:
    value, headers = good(mc)
    headers[HEADER_SCHEMA] = b"alto.Json"
    assert "garbled headers" in str(decode_error(mc, value, headers))
    headers[HEADER_SCHEMA] = b"\xff\xfe"
    assert "not UTF-8" in str(decode_error(mc, value, headers))


def test_corrupt_value_is_a_decode_error(mc: MessageCodec) -> None:
    value, headers = good(mc)
    assert value is not None
    decode_error(mc, value[:-1], headers)
    decode_error(mc, value + b"\x00", headers)


def test_unknown_reader_schema_is_a_decode_error(mc: MessageCodec) -> None:
    value, headers = good(mc)
    with pytest.raises(DecodeError, match="unknown reader schema"):
        mc.decode(value, list(headers.items()), reader_schema="alto.Nope")


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    value=st.none() | st.binary(max_size=40),
    ancestry=st.none() | st.binary(max_size=60),
    fingerprint=st.none() | st.binary(min_size=8, max_size=8),
    keep_real=st.booleans(),
)
def test_any_junk_record_raises_only_decode_error(
    mc: MessageCodec,
    value: bytes | None,
    ancestry: bytes | None,
    fingerprint: bytes | None,
    keep_real: bool,
) -> None:
    real_value, headers = good(mc)
    if not keep_real:
        headers = {}
    if ancestry is not None:
        headers[HEADER_ANCESTRY] = b"\xc3\x01" + headers.get(HEADER_ANCESTRY, b"")[2:10] + ancestry
    if fingerprint is not None:
        headers[HEADER_FINGERPRINT] = fingerprint
    try:
        mc.decode(value if value is not None else real_value, list(headers.items()), **WHERE)
    except DecodeError as err:
        offset = err.offset
    else:
        offset = 99
    assert offset == 99


# -- speed -------------------------------------------------------------------


def test_envelope_encode_decode_is_fast(mc: MessageCodec) -> None:
    """A loose floor (about 20x below what a laptop core does) that catches re-parsing per call."""
    env = Envelope(CHILD, {"text": "a sentence of the answer."}, "alto.Text", "split")
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        value, headers = mc.encode(env)
        mc.decode(value, headers)
    rate = n / (time.perf_counter() - start)
    assert rate > 2000, f"{rate:.0f} envelopes/s"


def test_a_decoded_ancestry_is_encoded_again_from_its_own_bytes() -> None:
    codec = MessageCodec()
    original = Envelope(Ancestry.root("q").child("a", 1), {"text": "x"}, "alto.Text", "s")
    value, headers = codec.encode(original)
    decoded = codec.decode(value, headers)
    header = dict(headers)["alto.ancestry"]
    assert codec.encode_ancestry(decoded.ancestry) is header  # reused, not re-encoded
    moved = decoded.ancestry.child("b", 0)  # another object: encoded afresh
    assert codec.decode_ancestry([("alto.ancestry", codec.encode_ancestry(moved))]) == moved


def test_a_stage_header_that_is_not_utf8_only_informs(mc: MessageCodec) -> None:
    # Found by a new user's fuzz: alto.stage = ff 00 fe failed the record, and its query.
    value, headers = good(mc)
    headers[HEADER_STAGE] = b"\xff\x00\xfe"
    env = mc.decode(value, list(headers.items()), **WHERE)
    assert env.value == {"text": "x"} and env.stage == "\ufffd\x00\ufffd"
