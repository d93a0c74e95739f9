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
    assert read_queries(["a", "b"], None, None, "alto.Text", Codec()) == [
        {"text": "a"},
        {"text": "b"},
    ]
    assert read_queries([], '{"text": "v"}', None, "alto.Text", Codec()) == [{"text": "v"}]
    assert read_queries([], None, file, "alto.Text", Codec()) == [{"text": "x"}, {"text": "y"}]


@pytest.mark.parametrize(
    ("texts", "value", "file", "got"),
    [
        (["a"], '{"text": "v"}', None, "TEXT and --value"),
        (["a"], None, "q.jsonl", "TEXT and --file"),
        ([], '{"text": "v"}', "q.jsonl", "--value and --file"),
        (["a", "b"], '{"text": "v"}', "q.jsonl", "TEXT and --value and --file"),
    ],
)
def test_read_queries_takes_text_value_or_file_not_several(
    tmp_path: Path, texts: list[str], value: str | None, file: str | None, got: str
) -> None:
    # Found by a new user: `push APP TEXT --value JSON` pushed both, though the usage
    # line (TEXT... | --value JSON | --file queries.jsonl) says they are exclusive.
    path = None
    if file is not None:
        path = tmp_path / file
        path.write_text('{"text": "x"}\n')
    with pytest.raises(ConfigError, match=f"choose one of TEXT, --value and --file, got {got};"):
        read_queries(texts, value, path, "alto.Text", Codec())


def test_read_queries_skips_a_bom_at_the_start_of_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by a new user: a file saved by an editor that writes a BOM was refused
    # ("q.jsonl:1 is not JSON: Unexpected UTF-8 BOM (decode using utf-8-sig)").
    file = tmp_path / "q.jsonl"
    file.write_bytes(b'\xef\xbb\xbf{"text": "x"}\r\n{"text": "y"}\r\n')
    assert read_queries([], None, file, "alto.Text", Codec()) == [{"text": "x"}, {"text": "y"}]
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(file.read_bytes())))
    assert read_queries([], None, Path("-"), "alto.Text", Codec()) == [{"text": "x"}, {"text": "y"}]
    # Only at the file's start: one later on (files joined) is named in words.
    file.write_bytes(b'\xef\xbb\xbf{"text": "x"}\n\xef\xbb\xbf{"text": "y"}\n')
    with pytest.raises(ConfigError, match=r"q.jsonl:2 starts with a byte order mark \(U\+FEFF\)"):
        read_queries([], None, file, "alto.Text", Codec())
    # Still UTF-8 only, the bad line named as counted from the file's start.
    file.write_bytes(b'\xef\xbb\xbf{"text": "x"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(ConfigError, match=r"q.jsonl:2 is not UTF-8 .*byte 0xe9"):
        read_queries([], None, file, "alto.Text", Codec())


def test_read_queries_keeps_a_line_whole_around_unicode_line_separators(tmp_path: Path) -> None:
    # JSON strings may hold U+2028, U+2029 and U+0085 unescaped (json.dumps with
    # ensure_ascii=False writes them so); str.splitlines() cut the line there and
    # push refused it ("q.jsonl:1 is not JSON: Unterminated string").
    texts = ["a\u2028b", "c\u2029d", "e\x85f"]
    file = tmp_path / "q.jsonl"
    file.write_text(
        "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts),
        encoding="utf-8",
    )
    assert read_queries([], None, file, "alto.Text", Codec()) == [{"text": t} for t in texts]


@pytest.mark.parametrize("depth", [101, 990, 3000, 100_000])
def test_read_queries_refuses_json_nested_too_deeply(tmp_path: Path, depth: int) -> None:
    # Found by a new user: a line of 3,000 (or 100,000) nested arrays was a rich
    # traceback ending "RecursionError: maximum recursion depth exceeded while
    # decoding a JSON array", exit 1; every other bad line is one error, exit 2.
    deep = '{"text": "x", "n": ' + "[" * depth + "]" * depth + "}"
    file = tmp_path / "deep.jsonl"
    file.write_text('{"text": "fine"}\n' + deep + "\n")
    with pytest.raises(ConfigError, match=r"deep.jsonl:2 is nested too deeply: more than 100"):
        read_queries([], None, file, "alto.Text", Codec())
    with pytest.raises(ConfigError, match=r"^--value is nested too deeply"):
        read_queries([], deep, None, "alto.Text", Codec())
    fits = '{"text": ' + "[" * 99 + '"x"' + "]" * 99 + "}"  # 100 levels: the schema's turn
    with pytest.raises(ConfigError, match="does not fit the app's input schema"):
        read_queries([], fits, None, "alto.Text", Codec())


def test_push_of_json_nested_too_deeply_is_one_error_line_exit_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from alto_stream.cli import app as cli

    file = tmp_path / "deep.jsonl"
    file.write_text('{"text": "x", "n": ' + "[" * 3000 + "]" * 3000 + "}\n")
    # Refused before Kafka is reached: no broker listens at this address.
    env = {"ALTO_BOOTSTRAP_SERVERS": "127.0.0.1:9"}
    for args in (["--file", str(file)], ["--value", file.read_text()]):
        result = CliRunner().invoke(cli, ["push", "workers.textflow:app", *args], env=env)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and "RecursionError" not in result.output
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        assert "nested too deeply" in lines[0]


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
    assert read_queries([], line, None, "my.Job", codec) == [value]
    assert read_queries([], None, file, "my.Job", codec) == [value]
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
