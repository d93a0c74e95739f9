"""The fast ancestry header reader agrees with fastavro, and fails only with DecodeError."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alto_stream import ancestry_reader
from alto_stream.ancestry import Ancestry, Frame, Kind
from alto_stream.codec import Codec, SchemaRegistry
from alto_stream.errors import AncestryError, DecodeError
from alto_stream.message import MessageCodec

REPO_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
CODEC = Codec(SchemaRegistry(REPO_SCHEMAS))

frames = st.lists(
    st.builds(
        Frame,
        attempt=st.text(max_size=14),
        index=st.integers(0, 2**31 - 1),
        count=st.none() | st.integers(0, 2**31 - 1),
    ),
    max_size=6,
).map(tuple)

ancestries = st.builds(
    Ancestry,
    query_id=st.text(min_size=1, max_size=24),
    query_time=st.floats(allow_nan=False),
    path=frames,
    kind=st.sampled_from(Kind),
    reason=st.none() | st.text(max_size=40),
    replay_of=st.none() | st.text(min_size=1, max_size=24),
)


def _fastavro(header: bytes) -> Ancestry:
    return Ancestry.from_dict(CODEC.decode_single(header, "alto.Ancestry"))


def test_it_implements_the_current_schema() -> None:
    # Fails when alto.Ancestry changes: update ancestry_reader with it (then this constant).
    current = CODEC.registry.get("alto.Ancestry")
    assert current.fingerprint == ancestry_reader.FINGERPRINT
    assert MessageCodec(CODEC)._fast_ancestry


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(ancestry=ancestries)
def test_it_reads_what_fastavro_reads(ancestry: Ancestry) -> None:
    header = CODEC.encode_single("alto.Ancestry", ancestry.to_dict())
    fast = ancestry_reader.read(header)
    assert fast == _fastavro(header) == ancestry
    assert fast.ids == ancestry.ids


def test_it_reads_blocks_with_a_byte_size() -> None:
    # Avro lets a writer give an array block a negative count followed by its size.
    ancestry = Ancestry.root("q", query_time=1.0).child("a", 1).child("b", 2, 3)
    plain = CODEC.encode_single("alto.Ancestry", ancestry.to_dict())
    start = 10 + 1 + 1 + 8  # header, length of "q", "q", the double
    assert plain[start] == 4  # zig-zag 2: two frames in one block
    frames_bytes = plain[start + 1 : plain.rindex(b"\x00\x00\x00") - 1]
    sized = plain[:start] + bytes([3, 2 * len(frames_bytes)]) + plain[start + 1 :]
    assert _fastavro(sized) == ancestry_reader.read(sized) == ancestry


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(ancestry=ancestries, data=st.data())
def test_corrupt_headers_give_a_decode_error_or_what_fastavro_gives(
    ancestry: Ancestry, data: st.DataObject
) -> None:
    header = bytearray(CODEC.encode_single("alto.Ancestry", ancestry.to_dict()))
    cut = data.draw(st.integers(10, len(header)))
    mutation = data.draw(st.sampled_from(["flip", "truncate", "append", "splice"]))
    if mutation == "flip":
        at = data.draw(st.integers(10, len(header) - 1))
        header[at] ^= data.draw(st.integers(1, 255))
    elif mutation == "truncate":
        del header[cut:]
    elif mutation == "append":
        header += data.draw(st.binary(min_size=1, max_size=8))
    else:
        header[cut:cut] = data.draw(st.binary(min_size=1, max_size=8))
    corrupt = bytes(header)
    try:
        expected: Ancestry | None = _fastavro(corrupt)
    except (DecodeError, AncestryError):
        expected = None
    codec = MessageCodec(CODEC)
    try:
        got: Ancestry | None = codec.decode_ancestry([("alto.ancestry", corrupt)], topic="t")
    except DecodeError as exc:
        got, error = None, exc
    if got is None:  # rejected: fine whatever fastavro thinks (it is laxer about int sizes)
        assert error.topic == "t"
    else:  # accepted: exactly what fastavro reads (repr: a flipped double may be NaN)
        assert repr(got) == repr(expected)


def test_an_older_version_goes_to_fastavro(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = MessageCodec(CODEC)
    monkeypatch.setattr(ancestry_reader, "read", _fail)
    header = CODEC.encode_single("alto.Ancestry", Ancestry.root("q", query_time=2.0).to_dict())
    with pytest.raises(AssertionError, match="fast reader used"):
        codec.decode_ancestry([("alto.ancestry", header)])
    older = header[:2] + bytes(8) + header[10:]  # another fingerprint: not the fast reader's
    with pytest.raises(DecodeError, match="unknown writer schema fingerprint"):
        codec.decode_ancestry([("alto.ancestry", older)])


def _fail(data: bytes) -> Ancestry:
    raise AssertionError("fast reader used")
