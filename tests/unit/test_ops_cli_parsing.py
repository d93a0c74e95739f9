"""Small parsers of the operating commands: times, replicas, queries, bootstrap addresses."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest

from alto_stream.cli._opsutil import parse_time
from alto_stream.cli.up_cmd import parse_replicas
from alto_stream.codec import Codec, SchemaRegistry
from alto_stream.errors import ConfigError
from alto_stream.ops.connect import parse_bootstrap
from alto_stream.ops.queries import read_queries
from alto_stream.ops.records import jsonable


def test_parse_time_forms() -> None:
    assert parse_time("1700000000") == 1700000000.0
    assert abs(parse_time("now") - time.time()) < 1
    assert abs(parse_time("-10m") - (time.time() - 600)) < 1
    assert abs(parse_time("2h ago") - (time.time() - 7200)) < 1
    assert parse_time("2024-01-02T03:04:05+00:00") == 1704164645.0
    with pytest.raises(ConfigError, match="bad time 'yesterday'"):
        parse_time("yesterday")


def test_parse_replicas() -> None:
    stages = ["a", "b", "c"]
    assert parse_replicas([], stages) == {"a": 1, "b": 1, "c": 1}
    assert parse_replicas(["2", "b=3"], stages) == {"a": 2, "b": 3, "c": 2}
    with pytest.raises(ConfigError, match="no stage 'x'; the stages are: a, b, c"):
        parse_replicas(["x=2"], stages)
    with pytest.raises(ConfigError, match="expected STAGE=N"):
        parse_replicas(["a=0"], stages)


def test_parse_bootstrap() -> None:
    assert parse_bootstrap("h:1, [::1]:2") == [("h", 1), ("::1", 2)]
    with pytest.raises(ConfigError, match="expected host:port"):
        parse_bootstrap("localhost")


def test_read_queries_from_text_value_and_file(tmp_path: Path) -> None:
    file = tmp_path / "q.jsonl"
    file.write_text(json.dumps({"text": "x"}) + "\n\n" + json.dumps({"text": "y"}) + "\n")
    got = read_queries(["a"], '{"text": "v"}', file, "alto.Text", Codec())
    assert got == [{"text": "a"}, {"text": "v"}, {"text": "x"}, {"text": "y"}]


def test_read_queries_names_the_bad_line(tmp_path: Path) -> None:
    file = tmp_path / "q.jsonl"
    file.write_text('{"text": "x"}\n{"nope": 1}\n')
    with pytest.raises(ConfigError, match=r"q.jsonl:2 does not fit the app's input schema"):
        read_queries([], None, file, "alto.Text", Codec())
    file.write_text("[1, 2]\n")
    with pytest.raises(ConfigError, match=r"q.jsonl:1: expected a JSON object, got list"):
        read_queries([], None, file, "alto.Text", Codec())
    with pytest.raises(ConfigError, match="no query given"):
        read_queries([], None, None, "alto.Text", Codec())


def test_read_queries_names_a_line_that_is_not_utf8(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "q.jsonl"
    file.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')  # Latin-1, not UTF-8
    with pytest.raises(ConfigError, match=r"q.jsonl:2 is not UTF-8 .*byte 0xe9"):
        read_queries([], None, file, "alto.Text", Codec())
    stdin = io.TextIOWrapper(io.BytesIO(file.read_bytes()))
    monkeypatch.setattr("sys.stdin", stdin)
    with pytest.raises(ConfigError, match=r"-:2 is not UTF-8"):
        read_queries([], None, Path("-"), "alto.Text", Codec())


def test_read_queries_refuses_a_query_larger_than_a_record_before_sending_any(
    tmp_path: Path,
) -> None:
    # Before: Kafka refused it mid-push; the queries before it were pushed, their
    # ids never printed, the one after it lost (OutOfOrderSequenceNumber at the stop).
    file = tmp_path / "q.jsonl"
    lines = [{"text": "small"}, {"text": "x" * 1_048_576}, {"text": "after"}]
    file.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(ConfigError, match=r"q.jsonl:2 is 1,048,5\d\d bytes, more than a record"):
        read_queries([], None, file, "alto.Text", Codec())
    assert read_queries(["x" * 900_000], None, None, "alto.Text", Codec())  # fits


BLOB_JOB = {
    "type": "record",
    "name": "Job",
    "namespace": "my",
    "fields": [
        {"name": "title", "type": "string"},
        {"name": "blob", "type": "bytes"},
        {"name": "id", "type": {"type": "fixed", "name": "Id", "size": 2}},
        {"name": "maybe", "type": ["null", "bytes"], "default": None},
        {"name": "either", "type": ["string", "bytes"], "default": ""},
        {"name": "parts", "type": {"type": "array", "items": "bytes"}, "default": []},
        {
            "name": "inner",
            "type": {"type": "record", "name": "Inner", "fields": [{"name": "b", "type": "bytes"}]},
        },
        {"name": "again", "type": {"type": "map", "values": "my.Inner"}, "default": {}},
    ],
}


def test_push_takes_bytes_as_base64_as_json_prints_them(tmp_path: Path) -> None:
    # Found by a new user: --json prints bytes as "base64:...", and push refused them
    # ("my.Job.blob is 'base64:', expected bytes"): no query with bytes could be pushed.
    (tmp_path / "my.Job.avsc").write_text(json.dumps(BLOB_JOB))
    codec = Codec(SchemaRegistry(tmp_path))
    value = {
        "title": "base64:AAE=",  # a string stays a string
        "blob": b"\x00\xff binary",
        "id": b"\xe9z",
        "maybe": b"",
        "either": "base64:AAE=",  # a union that takes a string: the text
        "parts": [b"a", b"\x80"],
        "inner": {"b": b"\xfe"},
        "again": {"k": {"b": b"\x01"}},
    }
    line = json.dumps(jsonable(value))
    assert '"blob": "base64:AP8gYmluYXJ5"' in line
    file = tmp_path / "q.jsonl"
    file.write_text(line + "\n")
    assert read_queries([], line, file, "my.Job", codec) == [value, value]
    empty = json.dumps({"title": "t", "blob": "base64:", "id": "base64:AAE=", "inner": {"b": ""}})
    with pytest.raises(
        ConfigError, match=r"my.Inner.b is '', expected bytes.*\(in JSON, bytes are \"base64:\""
    ):
        read_queries([], empty, None, "my.Job", codec)
    bad = json.dumps({"title": "t", "blob": "base64:***", "id": "base64:AAE=", "inner": {}})
    with pytest.raises(ConfigError, match=r"--value: field blob is 'base64:\*\*\*', which is not"):
        read_queries([], bad, None, "my.Job", codec)


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        (["--from-offset", "5", "--to-offset", "3"], "--to-offset 3 is not after --from-offset 5"),
        (["--from-offset", "5", "--to-offset", "5"], "--to-offset 5 is not after --from-offset 5"),
        (["--from-time", "2000", "--to-time", "1000"], "--to-time is before --from-time"),
    ],
)
def test_replay_of_an_inverted_range_is_an_error(bounds: list[str], message: str) -> None:
    # Found by a new user: it printed nothing and exited 0 (checked before Kafka is asked).
    from typer.testing import CliRunner

    from alto_stream.cli import app as cli

    result = CliRunner().invoke(
        cli, ["replay", "t", *bounds, "--print"], env={"ALTO_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    )
    assert result.exit_code == 2, result.output
    assert f"error: {message}" in result.stderr
