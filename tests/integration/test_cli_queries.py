"""push, tail, trace and replay against a real broker, with the app's workers running.

The workers run in a background thread (``LocalRun`` over Kafka); the commands
run in-process through typer's ``CliRunner``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from alto_stream.ancestry import Ancestry
from alto_stream.cli import app as cli
from alto_stream.message import Envelope, MessageCodec
from alto_stream.runner import LocalRun
from alto_stream.runtime.kafka import KafkaTransport
from alto_stream.runtime.worker import WorkerOptions
from alto_stream.testing import unique_name
from alto_stream.transport import OutRecord
from workers import textflow

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

DOC = "Hello there skip. Bye now.\n\nSecond para."
Run = Callable[..., tuple[int, str, str]]


@dataclass(frozen=True)
class Running:
    """An app whose workers run, and one query that went through it."""

    ref: str
    name: str
    idle_ref: str
    idle_name: str
    query_id: str
    final: dict[str, Any]


def _write_module(folder: Path, name: str) -> str:
    module = "m_" + name.replace("-", "_")
    (folder / f"{module}.py").write_text(
        f"from workers.textflow import build\napp = build({name!r})\n"
    )
    return f"{module}:app"


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def run(kafka_bootstrap: str) -> Run:
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(cli, list(args), env={"ALTO_BOOTSTRAP_SERVERS": kafka_bootstrap})
        return result.exit_code, result.stdout, result.stderr

    return invoke


@pytest.fixture(scope="module")
def running(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, run: Run
) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("apps")
    sys.path.insert(0, str(folder))
    name, idle = unique_name("cliq"), unique_name("cliidle")
    ref, idle_ref = _write_module(folder, name), _write_module(folder, idle)
    assert run("topics", "apply", ref)[0] == 0
    assert run("topics", "apply", idle_ref)[0] == 0
    stop = threading.Event()
    started = threading.Event()

    async def workers() -> None:
        transport = KafkaTransport(kafka_bootstrap)
        options = WorkerOptions(commit_interval=0.05)
        async with LocalRun(textflow.build(name), transport, options=options):
            started.set()
            await asyncio.to_thread(stop.wait)

    thread = threading.Thread(target=asyncio.run, args=(workers(),), daemon=True)
    thread.start()
    assert started.wait(30)
    try:
        code, out, err = run("push", ref, DOC, "--follow", "--json", "--timeout", "60")
        assert code == 0, err
        lines = _lines(out)
        yield Running(ref, name, idle_ref, idle, lines[0]["query_id"], lines[-1])
    finally:
        stop.set()
        thread.join(30)
        sys.path.remove(str(folder))


# -- push ---------------------------------------------------------------------


def test_push_follow_prints_the_id_then_the_final_result(running: Running) -> None:
    assert running.final["final"] is True
    assert running.final["query_id"] == running.query_id
    assert running.final["stage"] == "document"
    assert running.final["value"] == {"text": textflow.reference(DOC)}


def test_push_many_from_a_file_with_progress(running: Running, run: Run, tmp_path: Path) -> None:
    docs = ["One. Two.", "Three four.", "Five.\n\nSix seven."]
    file = tmp_path / "queries.jsonl"
    file.write_text("\n".join(json.dumps({"text": d}) for d in docs) + "\n")
    code, out, err = run("push", running.ref, "--file", str(file), "--follow", "--timeout", "60")
    assert code == 0, err
    ids = out.splitlines()[:3]
    assert all(len(i) == 20 for i in ids)
    finals = [line for line in out.splitlines() if line.startswith("final")]
    assert len(finals) == 3
    assert "3 of 3 queries finished" in err
    for doc in docs:
        assert json.dumps({"text": textflow.reference(doc)}) in out


def test_push_without_follow_prints_ids_only(running: Running, run: Run) -> None:
    code, out, _ = run("push", running.ref, "a", "b")
    assert code == 0
    assert len(out.split()) == 2


def test_push_bad_usage_exits_2(running: Running, run: Run) -> None:
    code, _, err = run("push", running.ref, "--value", '{"nope": 1}')
    assert code == 2
    assert "--value does not fit the app's input schema" in err
    code, _, err = run("push", running.ref)
    assert (code, "no query given" in err) == (2, True)
    code, _, err = run("push", "no_such_module_q:app", "x")
    assert (code, "unknown app" in err) == (2, True)
    # Before: both queries were pushed, though the usage line says one of the three.
    code, out, err = run("push", running.ref, "x", "--value", '{"text": "y"}')
    assert (code, out, "choose one of TEXT, --value and --file" in err) == (2, "", True)


def test_push_of_a_file_with_a_bom_and_crlf_lines(
    running: Running, run: Run, tmp_path: Path
) -> None:
    # Found by a new user: a file an editor saved with a byte order mark was refused.
    docs = ["Bom one.", "Bom two.\u2028Same line."]
    file = tmp_path / "bom.jsonl"
    lines = "".join(json.dumps({"text": d}, ensure_ascii=False) + "\r\n" for d in docs)
    file.write_bytes(b"\xef\xbb\xbf" + lines.encode())
    code, out, err = run("push", running.ref, "--file", str(file), "--follow", "--timeout", "60")
    assert code == 0, err
    assert "2 of 2 queries finished" in err
    for doc in docs:
        assert json.dumps({"text": textflow.reference(doc)}) in out


def test_push_follow_times_out_with_status_1(running: Running, run: Run) -> None:
    code, out, err = run("push", running.idle_ref, "Nobody runs me.", "--follow", "--timeout", "1")
    assert code == 1
    assert len(out.split()) == 1
    assert "1 queries did not finish within 1.0s" in err


# -- tail ---------------------------------------------------------------------


def test_tail_shows_decoded_records_with_ancestry(running: Running, run: Run) -> None:
    q = running.query_id
    code, out, _ = run(
        "tail", f"{running.name}.input", "--from-beginning", "--query", q, "--no-follow", "--json"
    )
    assert code == 0
    (record,) = _lines(out)
    assert (record["query_id"], record["depth"], record["kind"]) == (q, 0, "DATA")
    assert record["value"] == {"text": DOC}
    assert record["stage"] == "client"

    code, out, _ = run(
        "tail", f"{running.name}.shout", "--from-beginning", "-q", q, "--no-follow", "--json"
    )
    assert code == 0
    records = _lines(out)
    words = {tuple(r["index"]): r for r in records if r["depth"] == 3}
    assert sorted(words) == [
        (0, 0, 0),
        (0, 0, 1),
        (0, 0, 2),
        (0, 1, 0),
        (0, 1, 1),
        (1, 0, 0),
        (1, 0, 1),
    ]
    assert words[(0, 0, 2)]["kind"] == "SKIP"
    assert words[(0, 0, 0)]["value"] == {"text": "HELLO"}
    assert {r["kind"] for r in records if r["depth"] < 3} == {"END"}

    code, out, _ = run("tail", f"{running.name}.shout", "--from-beginning", "-q", q, "--max", "2")
    assert code == 0
    assert len(out.splitlines()) == 2
    assert f"q={q}" in out


def test_tail_from_the_end_shows_only_new_records(running: Running, run: Run) -> None:
    code, out, _ = run("tail", f"{running.name}.input", "--duration", "1")
    assert (code, out) == (0, "")
    code, out, _ = run("tail", f"{running.name}.input", "--from-offset", "-1", "--no-follow")
    assert code == 0
    assert 1 <= len(out.splitlines()) <= 3


def test_tail_bad_usage_exits_2(running: Running, run: Run) -> None:
    code, _, err = run("tail", f"{running.name}.nope", "--no-follow")
    assert (code, "unknown topic(s)" in err) == (2, True)
    code, _, err = run("tail", f"{running.name}.input", "--from-beginning", "--from-offset", "1")
    assert (code, "choose one of" in err) == (2, True)
    code, _, err = run("tail", f"{running.name}.input", "--from-time", "yesterday")
    assert (code, "bad time" in err) == (2, True)


# -- trace --------------------------------------------------------------------


def test_trace_rebuilds_the_query_tree(running: Running, run: Run) -> None:
    code, out, err = run("trace", running.query_id, "--app", running.ref, "--json")
    assert code == 0, err
    trace = json.loads(out)
    assert trace["query_id"] == running.query_id
    assert trace["latency"] > 0
    path = [hop["stage"] for hop in trace["critical_path"]]
    assert path[0] == "client"
    assert path[-1] == "document"
    assert {"paragraphs", "sentences", "words", "shout"} <= set(path)
    assert [c["index"] for c in trace["tree"]["children"]] == [[0], [1], [2]]
    stages = {s["stage"]: s for s in trace["stages"]}
    assert stages["shout"]["records"] == 10  # 7 words + 3 end markers passed on
    code, out, _ = run("trace", running.query_id, "--app", running.ref)
    assert code == 0
    assert "latency" in out
    assert "time per stage" in out


def test_trace_bad_usage_exits_2(running: Running, run: Run) -> None:
    code, _, err = run("trace", "nope", "--app", running.ref)
    assert (code, "unknown query 'nope'" in err) == (2, True)
    code, _, _ = run("trace", running.query_id)
    assert code == 2  # --app is required


# -- replay -------------------------------------------------------------------


def _documents(run: Run, running: Running) -> list[dict[str, Any]]:
    code, out, _ = run(
        "tail", f"{running.name}.document", "--from-beginning", "--no-follow", "--json"
    )
    assert code == 0
    return [r for r in _lines(out) if r.get("depth") == 0]


def test_replay_print(running: Running, run: Run) -> None:
    code, out, _ = run(
        "replay",
        f"{running.name}.input",
        "--from-beginning",
        "--query",
        running.query_id,
        "--print",
        "--json",
    )
    assert code == 0
    assert [r["query_id"] for r in _lines(out)] == [running.query_id]


@pytest.mark.parametrize(("topic", "stage"), [("input", "paragraphs"), ("words", "shout")])
def test_replay_into_a_stage_gets_its_own_results(
    running: Running, run: Run, topic: str, stage: str
) -> None:
    q = running.query_id
    before = [d for d in _documents(run, running) if d["query_id"] == q]
    code, out, err = run(
        "replay",
        f"{running.name}.{topic}",
        "--from-offset",
        "0",
        "--query",
        q,
        "--to-stage",
        stage,
        "--app",
        running.ref,
        "--json",
        "--timeout",
        "60",
    )
    assert code == 0, err
    lines = _lines(out)
    new_id = lines[0]["query_id"]
    assert lines[0] == {"replay_of": q, "query_id": new_id, "stage": stage}
    final = lines[-1]
    assert (final["final"], final["query_id"], final["replay_of"]) == (True, new_id, q)
    assert final["value"] == running.final["value"]
    after = _documents(run, running)
    assert [d for d in after if d["query_id"] == q] == before  # the original is untouched
    assert len(before) == 1
    (replayed,) = [d for d in after if d["query_id"] == new_id]
    assert replayed["id"] != before[0]["id"]
    assert replayed["replay_of"] == q


def test_replay_bad_usage_exits_2(running: Running, run: Run) -> None:
    topic, q, ref = f"{running.name}.words", running.query_id, running.ref
    cases = [
        (["--print"], "give one start"),
        (["--from-beginning"], "give one action"),
        (["--from-beginning", "--print", "--to-stage", "shout"], "give one action"),
        (["--from-beginning", "--to-stage", "shout"], "needs --app"),
        (["--from-beginning", "--to-stage", "nope", "--app", ref], "has no stage 'nope'"),
        # The words topic holds words (depth 3) and forwarded markers (depth 1-2):
        # whichever comes first, the replay into a depth-0 stage is refused.
        (
            ["--from-beginning", "-q", q, "--to-stage", "paragraphs", "--app", ref],
            "but stage 'paragraphs' reads records of depth 0",
        ),
        (["--from-beginning", "-q", "nope", "--to-stage", "shout", "--app", ref], "no record"),
    ]
    for args, message in cases:
        code, _, err = run("replay", topic, *args)
        assert code == 2, (args, err)
        assert message in err, (args, err)


# -- what new users met (2026-12-02) --------------------------------------------


def _send(
    kafka_bootstrap: str, topic: str, envelope: Envelope, codec: MessageCodec | None = None
) -> None:
    async def send() -> None:
        value, headers = (codec or MessageCodec()).encode(envelope)
        producer = KafkaTransport(kafka_bootstrap).producer()
        await producer.start()
        try:
            await producer.send_many([OutRecord(topic, value, headers, envelope.id.encode())])
        finally:
            await producer.stop()

    asyncio.run(send())


def _wait_for_lines(run: Run, *args: str, until: Callable[[list[dict[str, Any]]], bool]) -> Any:
    lines: list[dict[str, Any]] = []
    for _ in range(100):
        code, out, err = run(*args, "--from-beginning", "--no-follow", "--json")
        assert code == 0, err
        lines = _lines(out)
        if until(lines):
            return lines
        time.sleep(0.2)
    raise AssertionError(f"not seen: {lines}")


def test_an_impossible_query_is_a_dead_letter_an_error_final_and_a_trace(
    running: Running, run: Run, kafka_bootstrap: str
) -> None:
    # A hand-written query with a NaN query_time: before, it ran, and trace died on it.
    query = unique_name("q-nan")
    _send(
        kafka_bootstrap,
        f"{running.name}.input",
        Envelope(Ancestry(query, float("nan")), {"text": "x"}, "alto.Text", "client"),
    )
    (final,) = _wait_for_lines(
        run, "tail", f"{running.name}.document", "-q", query, until=lambda lines: bool(lines)
    )
    assert final["kind"] == "ERROR" and "query_time is nan" in final["reason"]
    code, out, _ = run(
        "tail", f"{running.name}.paragraphs.dlq", "--from-beginning", "-q", query, "--no-follow"
    )
    assert code == 0 and len(out.splitlines()) == 1, out  # one line, the reason whole
    assert f"dead letter of {running.name}.input[" in out and "query_time is nan" in out
    code, out, err = run("trace", query, "--app", running.ref)
    assert code == 0, err
    assert "ERROR" in out and "Traceback" not in out + err


def test_tail_of_a_changelog_names_its_entries(running: Running, run: Run) -> None:
    code, out, _ = run(
        "tail", f"{running.name}.document.changelog", "--from-beginning", "--no-follow"
    )
    assert code == 0 and "changelog fired: ancestor" in out, out
    assert "undecodable" not in out


def test_push_shows_an_inner_stages_partials(running: Running, run: Run) -> None:
    code, out, err = run(
        "push", running.ref, DOC, "--follow", "--partials-from", "paragraphs", "--json"
    )
    assert code == 0, err
    results = _lines(out)[1:]
    # By index: the two paragraphs lie in different partitions, read in either order.
    paragraphs = {
        tuple(r["index"]): r["value"]["text"] for r in results if r["stage"] == "paragraphs"
    }
    assert paragraphs == {(i,): text for i, text in enumerate(DOC.split("\n\n"))}
    assert [r["stage"] for r in results if r["final"]] == ["document"]
    code, _, err = run("push", running.ref, DOC, "--follow", "--partials-from", "nope")
    assert code == 2 and "has no stage 'nope'" in err


def test_replaying_part_of_a_split_warns_and_says_why_it_cannot_finish(
    running: Running, run: Run
) -> None:
    # One word of the query, without its END marker: its sentence never completes.
    code, out, _ = run(
        "tail",
        f"{running.name}.words",
        "--from-beginning",
        "-q",
        running.query_id,
        "--no-follow",
        "--json",
    )
    assert code == 0
    word = next(r for r in _lines(out) if r["depth"] == 3 and r["count"] is None)
    code, out, err = run(
        "replay",
        f"{running.name}.words",
        "--from-offset",
        str(word["offset"]),
        "--to-offset",
        str(word["offset"] + 1),
        "--partition",
        str(word["partition"]),
        "--to-stage",
        "shout",
        "--app",
        running.ref,
        "--timeout",
        "2",
    )
    assert code == 1
    assert "warning: the records replayed of 1 queries" in err
    assert "how many records split 'words' made" in err  # before: "their split into 'shout'"
    assert "replay the whole query from the input" in err
    assert "a longer --timeout" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert all(line.count("fix:") <= 1 for line in lines), err  # before: the error had two


# -- misuse that printed nothing and exited 0 (found by new users) --------------


def test_a_partition_the_topic_does_not_have_is_an_error(running: Running, run: Run) -> None:
    for command in (["tail"], ["replay"]):
        args = [*command, f"{running.name}.input", "--partition", "7", "--from-beginning"]
        args += ["--no-follow"] if command == ["tail"] else ["--print"]
        code, out, err = run(*args)
        assert (code, out) == (2, ""), (args, err)
        assert "error: no partition 7: " in err and f"{running.name}.input has " in err, err


def test_replay_print_of_an_empty_range_is_an_error(running: Running, run: Run) -> None:
    code, out, err = run("replay", f"{running.name}.input", "--from-offset", "99999", "--print")
    assert (code, out) == (2, "")
    assert "error: no record in that range" in err, err


def test_tail_from_an_offset_past_the_end_is_an_error(running: Running, run: Run) -> None:
    # docs/cli.md says so "with tail too"; a new user's `tail --from-offset 1000
    # --no-follow` printed nothing and exited 0.
    code, out, err = run("tail", f"{running.name}.input", "--from-offset", "99999", "--no-follow")
    assert (code, out) == (2, "")
    assert "error: no record at offset 99999 or after it" in err, err


def test_replay_print_of_app_schema_records_says_app_decodes_them(
    running: Running, run: Run, kafka_bootstrap: str
) -> None:
    from alto_stream import App

    note = {
        "type": "record",
        "name": "Note",
        "namespace": "my",
        "fields": [{"name": "body", "type": "string"}],
    }
    own = App("own", input_schema="my.Note", schemas=[note])

    @own.map(source=own.input, schema="my.Note")
    def same(doc: dict[str, Any]) -> dict[str, Any]:
        return doc

    topic = f"{running.idle_name}.words"  # nobody reads it
    for i in range(2):
        envelope = Envelope(Ancestry(f"own-{i}", time.time()), {"body": "x"}, "my.Note", "same")
        _send(kafka_bootstrap, topic, envelope, own.topology().codec())
    code, out, err = run("replay", topic, "--from-beginning", "--print")
    assert code == 0, err
    assert out.count("undecodable") == 2
    assert err.count("--app APP decodes them") == 1, err
