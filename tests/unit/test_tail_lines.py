"""`tail`'s lines: one per record, a dead letter's reason whole, a changelog's entries named."""

from __future__ import annotations

import time

import pytest
from rich.console import Console

from alto_stream.aggregate import Tracker
from alto_stream.ancestry import Ancestry, Kind
from alto_stream.cli._opsview import record_text
from alto_stream.message import Envelope, MessageCodec
from alto_stream.ops.records import decode_record
from alto_stream.runtime.failures import dead_letter
from alto_stream.runtime.state import AggregateState
from alto_stream.transport import InRecord, OutRecord

CODEC = MessageCodec()


def _read(record: OutRecord, offset: int = 0) -> InRecord:
    """``record`` as a reader gets it back."""
    return InRecord(
        record.topic,
        record.partition or 0,
        offset,
        record.key,
        record.value,
        tuple(record.headers),
        time.time(),
    )


def _line(record: OutRecord) -> str:
    console = Console(record=True, width=60)
    console.print(record_text(decode_record(CODEC, _read(record))), soft_wrap=True)
    return console.export_text()


def test_a_dead_letter_is_one_line_with_its_whole_reason() -> None:
    # Before: the letter's value as a JSON preview cut at 100 characters (the reason
    # cut off at `"error": "ValueError(\"b…`), wrapped over two lines by the console.
    ancestry = Ancestry.root("q-letter").child("a", 0)
    value, headers = CODEC.encode(Envelope(ancestry, {"text": "boom"}, "alto.Text", "split"))
    failed = InRecord("app.split", 2, 7, b"k", value, tuple(headers), time.time())
    reason = "the fragment " + "boom " * 30 + "is not allowed here"
    letter = dead_letter(
        failed,
        ValueError(reason),
        ancestry,
        stage="shout",
        topic="app.shout.dlq",
        codec=CODEC,
        limit=1_000_000,
    )
    line = _line(letter)
    assert line.count("\n") == 1, line
    assert "dead letter of app.split[2]@7 at stage shout" in line
    assert f"ValueError: {reason}" in line


def test_a_huge_query_id_is_cut_on_its_line() -> None:
    ancestry = Ancestry.root("q" * 100_000)
    value, headers = CODEC.encode(Envelope(ancestry, {"text": "x"}, "alto.Text"))
    line = _line(OutRecord("app.input", value, headers, b"k"))
    assert len(line) < 400 and "q" * 63 + "…" in line


@pytest.mark.parametrize("kind", [Kind.DATA, Kind.END])
def test_a_changelogs_entries_read_as_what_they_are(kind: Kind) -> None:
    # Before: `tail APP.STAGE.changelog` called a kept END marker "undecodable: a END
    # marker must have no value, got b''", and fired entries "missing alto.ancestry".
    state = AggregateState("app.join.changelog", lambda: Tracker(0, 1), CODEC)
    root = Ancestry.root("q-log")
    child = root.child("a", 0) if kind is Kind.DATA else root.end_marker("a", 1)
    value = {"text": "x"} if kind is Kind.DATA else None
    data, headers = CODEC.encode(Envelope(child, value, "alto.Text" if value else None, "split"))
    source = InRecord("app.split", 0, 3, b"k", data, tuple(headers), time.time())
    entry = state.fragment_record(0, root.id, source, child)
    fired, tombstone = state.fired_records(0, root.id)
    kept = decode_record(CODEC, _read(entry))
    assert kept.envelope is not None and kept.envelope.kind is kind
    assert f"{kind.value}" in _line(entry) and "undecodable" not in _line(entry)
    assert decode_record(CODEC, _read(fired)).entry == f"fired: ancestor {root.id} fired"
    assert "changelog fired: ancestor" in _line(fired)
    assert "tombstone of" in (decode_record(CODEC, _read(tombstone)).entry or "")
    assert decode_record(CODEC, _read(fired)).to_dict()["changelog"].startswith("fired")


def test_control_and_bidi_characters_are_escaped_on_the_line() -> None:
    # Found by a new user: a query id "a\x00b" showed as "q=a b", and U+202E in an id
    # or a value reordered the rest of the terminal line.
    ancestry = Ancestry.root("a\x00b\u202eevil").child("a", 0).marker(Kind.ERROR, "bad\nline")
    value, headers = CODEC.encode(Envelope(ancestry, None, None, "split"))
    line = _line(OutRecord("app.split", value, headers, b"k", 0))
    assert "q=a\\x00b\\u202eevil" in line
    assert "reason=bad\\nline" in line and line.count("\n") == 1
    data = Ancestry.root("q-value")
    value, headers = CODEC.encode(Envelope(data, {"text": "x\u202ey\x85"}, "alto.Text", "in"))
    assert '{"text": "x\\u202ey\\x85"}' in _line(OutRecord("app.in", value, headers, b"k", 0))
    assert "\u202e" not in line and "\x00" not in line


def test_replay_print_keeps_a_long_record_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # A new user's `replay --print` wrapped 11-word queries at the console's width:
    # 120 lines for 60 records, which grep and wc miscount (tail kept them whole).
    from alto_stream.cli import replay_cmd

    console = Console(record=True, width=60)
    monkeypatch.setattr(replay_cmd, "out", console)
    value, headers = CODEC.encode(
        Envelope(Ancestry.root("q-long"), {"text": "word " * 40}, "alto.Text")
    )
    record = _read(OutRecord("app.input", value, headers, b"q-long"))
    replay_cmd._print([decode_record(CODEC, record)], as_json=False)
    assert len(console.export_text().splitlines()) == 1
