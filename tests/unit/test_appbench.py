"""The side-by-side harness with a fake System: arrivals, the summary's math, CSV and JSON shape.

No broker and no model: a fake System answers after a delay chosen per question and
calls ``on_partial``; the harness's timing, counting and statistics are what is checked.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from alto_stream.cli.bench_apps import app_name, parse_stage_counts
from alto_stream.errors import AltoError, ConfigError
from benchmarks import appbench, sweep, sweep_files
from benchmarks.appbench import Row, arrivals, drive, summarize, write_csv
from benchmarks.engine import answer_tokens
from benchmarks.systems import EngineOptions, parse_system, resolve
from benchmarks.systems.alto import PARTIAL_STAGE, failing_to_start
from workers import prompts
from workers.parsing import parse_claims, parse_questions, parse_verdict

pytestmark = pytest.mark.timeout(60)

SUMMARY_KEYS = {
    "system",
    "app",
    "rate",
    "queries",
    "completed",
    "p50_s",
    "p99_s",
    "first_partial_p50_s",
    "throughput_qps",
    "slo_s",
    "slo_attainment",
    "engine",
}


class FakeSystem:
    """Answers ``question`` after ``delays[question]`` seconds, with two partials on the way."""

    name = "fake"

    def __init__(self, delays: dict[str, float], fail: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.delays, self.fail = delays, fail
        self.started: list[tuple[str, float]] = []
        self.admitted: dict[str, float] = {}

    async def start(self) -> None:
        """Nothing to start."""

    async def run(self, query_id: str, question: str, on_partial: Callable[[], None]) -> str:
        self.started.append((query_id, asyncio.get_running_loop().time()))
        delay = self.delays[question]
        await asyncio.sleep(delay / 2)
        on_partial()
        on_partial()
        if question in self.fail:
            raise RuntimeError("the fake failed")
        await asyncio.sleep(delay / 2)
        return json.dumps({"answer": question})

    async def close(self) -> None:
        """Nothing to stop."""


def test_arrivals_are_seeded_poisson_open_loop() -> None:
    times = arrivals(4.0, 4000, seed=7)
    assert times == arrivals(4.0, 4000, seed=7)
    assert times != arrivals(4.0, 4000, seed=8)
    assert times[0] == 0.0
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g >= 0 for g in gaps)
    assert statistics.mean(gaps) == pytest.approx(0.25, rel=0.06)  # mean gap 1/rate
    assert statistics.stdev(gaps) == pytest.approx(0.25, rel=0.1)  # exponential: sd = mean
    with pytest.raises(ValueError, match="rate"):
        arrivals(0.0, 3)


def test_summary_math_percentiles_slo_attainment_and_throughput() -> None:
    rows = [Row(f"q{i}", "x", arrival_s=float(i), latency_s=float(i + 1)) for i in range(10)]
    rows[0].first_partial_s, rows[1].first_partial_s, rows[2].first_partial_s = 0.5, 1.0, 3.0
    rows.append(Row("late", "x", arrival_s=10.0, error="no result"))  # incomplete: a miss
    summary = summarize(rows, system="s", app="rag", rate=1.0, slo_s=5.0, engine="emulated")
    assert set(summary) >= SUMMARY_KEYS
    assert (summary["queries"], summary["completed"]) == (11, 10)
    assert summary["p50_s"] == pytest.approx(5.5)  # latencies 1..10, interpolated
    assert summary["p99_s"] == pytest.approx(9.91)
    assert summary["first_partial_p50_s"] == pytest.approx(1.0)
    # 10 completed between the first arrival (0) and the last completion (9 + 10 = 19).
    assert summary["throughput_qps"] == pytest.approx(10 / 19)
    assert summary["slo_attainment"] == pytest.approx(5 / 11)  # latencies 1..5 of 11 sent
    assert (
        summarize(rows, system="s", app="rag", rate=1.0, slo_s=None, engine="e")["slo_attainment"]
        is None
    )


def test_a_run_with_nothing_completed_has_no_figures() -> None:
    rows = [Row("q", "x", 0.0, error="boom")]
    summary = summarize(rows, system="s", app="rag", rate=1.0, slo_s=1.0, engine="emulated")
    assert summary["completed"] == 0
    assert summary["p50_s"] is None and summary["throughput_qps"] is None
    assert summary["slo_attainment"] == 0.0
    json.dumps(summary)  # JSON-ready: no NaN objects


async def test_drive_sends_on_schedule_and_times_partials_and_finals() -> None:
    system = FakeSystem({"a": 1.0, "b": 0.1, "c": 0.05}, fail={"c"})
    rows, wall = await drive(system, ["a", "b", "c"], [0.0, 0.1, 0.15], run_id="t")
    assert [r.query_id for r in rows] == ["t-0", "t-1", "t-2"]
    starts = dict(system.started)
    a, b, c = rows
    # Open loop: b is sent at its time (0.1 s after a), before a has finished (1 s).
    assert starts["t-1"] - starts["t-0"] >= 0.09
    assert starts["t-1"] < starts["t-0"] + a.latency_s  # type: ignore[operator]
    assert a.latency_s >= 0.99 and b.latency_s >= 0.09  # type: ignore[operator]
    assert a.partials == 2 and 0 < a.first_partial_s < a.latency_s  # type: ignore[operator]
    assert c.latency_s is None and c.error is not None and "the fake failed" in c.error
    assert c.partials == 2
    assert wall >= a.latency_s  # type: ignore[operator]


class AdmittingSystem(FakeSystem):
    """Holds each query until its turn (one at a time), saying when it let it in."""

    def __init__(self, delays: dict[str, float]) -> None:
        super().__init__(delays)
        self.turn = asyncio.Lock()

    async def run(self, query_id: str, question: str, on_partial: Callable[[], None]) -> str:
        async with self.turn:
            self.admitted[query_id] = time.time()
            return await super().run(query_id, question, on_partial)


async def test_latency_from_admission_leaves_the_wait_out() -> None:
    system = AdmittingSystem({"a": 0.4, "b": 0.4, "c": 0.4})
    rows, _ = await drive(system, ["a", "b", "c"], [0.0, 0.0, 0.0])
    waits = [r.admission_wait_s for r in rows]
    assert waits[0] == pytest.approx(0.0, abs=0.05)
    assert waits[1] == pytest.approx(0.4, abs=0.08) and waits[2] == pytest.approx(0.8, abs=0.1)
    summary = summarize(rows, system="s", app="rag", rate=1.0, slo_s=None, engine="e")
    assert summary["p99_s"] == pytest.approx(1.2, abs=0.1)  # the last waited 0.8 s
    assert summary["admitted_p99_s"] == pytest.approx(0.4, abs=0.06)  # each ran 0.4 s
    assert summary["admission_wait_p50_s"] == pytest.approx(0.4, abs=0.08)
    # Without an admission there are no such figures.
    plain, _ = await drive(FakeSystem({"a": 0.01}), ["a"], [0.0])
    assert "admitted_p50_s" not in summarize(
        plain, system="s", app="rag", rate=1.0, slo_s=None, engine="e"
    )


async def test_every_system_answers_one_warm_up_query_first_and_a_failure_is_not_fatal() -> None:
    system = FakeSystem({appbench.WARM_UP: 0.01}, fail={appbench.WARM_UP})
    await appbench.warm_up(system)  # logged, not raised
    assert [q for q, _ in system.started] == ["warm-up"]
    assert appbench.WARM_UP not in appbench.questions("rag", len(appbench.QUESTIONS))


async def test_a_query_past_the_timeout_is_a_row_not_an_exception() -> None:
    rows, _ = await drive(FakeSystem({"slow": 5.0}), ["slow"], [0.0], timeout=0.1)
    assert rows[0].latency_s is None and "within 0.1 s" in (rows[0].error or "")


def test_csv_has_one_row_per_query_with_the_run_columns(tmp_path: Path) -> None:
    rows = [Row("q0", "What?", 0.0, 0.1, 0.3, 2), Row("q1", "Who?", 0.5, None, None, 0, "x")]
    path = tmp_path / "out" / "rows.csv"
    write_csv(rows, path, system="alto", app="rag", rate=2.0, engine="emulated")
    read = list(csv.DictReader(path.open()))
    assert len(read) == 2
    assert list(read[0])[:4] == ["system", "app", "rate", "engine"]
    assert read[0]["latency_s"] == "0.3" and read[1]["latency_s"] == ""
    assert read[1]["error"] == "x" and read[0]["engine"] == "emulated"


def test_questions_are_the_same_list_in_the_same_order() -> None:
    assert appbench.questions("rag", 40) == appbench.questions("rag", 40)
    assert appbench.questions("cove", 3) == list(appbench.QUESTIONS[:3])
    assert appbench.questions("rag", 40)[32] == appbench.QUESTIONS[0]  # cycled


def test_system_names_and_app_names() -> None:
    assert parse_system("alto") == ("alto", None, "memory")
    assert parse_system("langgraph-fused") == ("langgraph", "fused", "memory")
    assert parse_system("langgraph-functional-sqlite") == ("langgraph", "functional", "sqlite")
    for bad in ("lang", "langgraph", "langgraph-graph-postgres", "alto-x"):
        with pytest.raises(AltoError):
            parse_system(bad)
    assert app_name("workers.fanout:app") == "fanout" and app_name("floor") is None
    assert app_name("workers.nope:app") is None
    assert parse_stage_counts(["score=2", "generate=1"]) == {"score": 2, "generate": 1}
    with pytest.raises(ConfigError):
        parse_stage_counts(["score"])
    assert set(PARTIAL_STAGE) == set(appbench.APPS)
    assert EngineOptions(capacity=4).flags() == ["--capacity", "4"]


def test_a_langgraph_system_is_resolved_or_refused_clearly() -> None:
    try:
        import benchmarks.langgraph  # noqa: F401
    except ImportError:
        with pytest.raises(AltoError, match="LangGraph systems are not available"):
            resolve("langgraph-graph")
    else:
        with pytest.raises(AltoError, match="no LangGraph variant"):
            resolve("langgraph-nosuchvariant")


def test_the_engines_capacity_in_queries_per_second() -> None:
    config = {"capacity": 8, "first_token": 0.1, "token_rate": 50.0, "slowdown": 1.0}
    # 2 calls, 100 tokens: 2 * 0.1 + 100 * 2 / 50 = 4.2 request-seconds per query.
    assert sweep.capacity_qps(config, calls=2, tokens=100) == pytest.approx(8 / 4.2)
    assert sweep.slo_for([2.0, 3.0]) == pytest.approx(3.0)
    assert sweep.slo_for([]) is None
    runs = [
        {"throughput_qps": 1.0, "slo_attainment": 1.0},
        {"throughput_qps": 2.0, "slo_attainment": 0.95},
        {"throughput_qps": 3.0, "slo_attainment": 0.5},
    ]
    assert sweep.throughput_at_slo(runs) == 2.0
    assert sweep.throughput_at_slo(runs[2:]) == 0.0


def test_the_emulated_text_has_the_shape_the_parsers_read() -> None:
    """A list prompt gets a dashed list, questions where asked, a verdict a label."""
    text = "".join(answer_tokens(prompts.decompose_prompt("Which is older?"), 64)[0])
    assert "\n- " in text
    assert len(parse_questions(text)) >= 2
    text = "".join(answer_tokens(prompts.plan_prompt("Who?", "A b."), 64)[0])
    assert parse_questions(text)
    text = "".join(answer_tokens(prompts.claims_prompt("The sun is hot."), 64)[0])
    assert parse_claims(text) and not text.rstrip().endswith("?")
    text = "".join(answer_tokens(prompts.verdict_prompt("x is y", ["a: b"]), 32)[0])
    assert parse_verdict(text).label in ("supported", "refuted")
    text = "".join(answer_tokens(prompts.answer_prompt("Who?"), 96)[0])
    assert "\n" not in text and text.endswith(".")


def _rows(latencies: list[float | None]) -> list[Row]:
    return [
        Row(f"q{i}", "x", float(i), None if x is None else x / 2, x, 1 if x else 0)
        for i, x in enumerate(latencies)
    ]


def test_the_sweep_applies_one_slo_per_app_and_writes_plots_and_table(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the bench extra: pip install -e '.[bench]'")

    def system(low: list[float | None], **loads: list[float | None]) -> dict[str, object]:
        runs = {"low": _rows(low), **{k.replace("_", "."): _rows(v) for k, v in loads.items()}}
        summaries = {
            k: summarize(v, system="s", app="rag", rate=1.0, slo_s=None, engine="emulated")
            for k, v in runs.items()
        }
        return {"summaries": summaries, "rows": runs}

    fast = system([1.0, 1.0, 2.0], **{"0_5": [1.0, 2.0], "1_2": [2.0, 9.0]})
    slow = system([2.0, 3.0, 4.0], **{"0_5": [3.0, 4.0], "1_2": [5.0, None]})
    entry = {
        "bound": {"bound_s": 1.0, "llm_calls_per_query": 1.0, "llm_tokens_per_query": 90.0},
        "capacity_qps": 2.0,
        "systems": {"fast": fast, "slow": slow},
    }
    sweep._apply_slo(entry, "rag", 1.0)
    low_p99 = fast["summaries"]["low"]["p99_s"]  # type: ignore[index]
    assert entry["slo_s"] == pytest.approx(1.5 * low_p99)  # the lowest low-load p99, x1.5
    assert fast["summaries"]["0.5"]["slo_attainment"] == 1.0  # type: ignore[index]
    assert slow["summaries"]["1.2"]["slo_attainment"] == 0.0  # type: ignore[index]
    assert fast["throughput_at_slo_qps"] == fast["summaries"]["0.5"]["throughput_qps"]  # type: ignore[index]
    assert slow["throughput_at_slo_qps"] == 0.0
    assert fast["low_load_p50_x_bound"] == pytest.approx(1.0)
    result = {
        "apps": {"rag": entry},
        "loads": [0.5, 1.2],
        "systems": ["fast", "slow"],
        "engine": "emulated",
        "engine_config": {"capacity": 4},
        "date": "now",
    }
    sweep_files.write(result, tmp_path, "0.5")
    for name in ("rag-latency.png", "rag-cdf.png", "throughput-at-slo.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    table = (tmp_path / "results.md").read_text()
    assert "EMULATED" in table and "| rag | fast |" in table and "| rag | slow |" in table
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert "rows" not in saved["apps"]["rag"]["systems"]["fast"]
    lines = (tmp_path / "rows.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 * (3 + 2 + 2)
    # Read back (rows included) and merged with a re-run of the app: the re-run wins.
    again = sweep_files.read(tmp_path)
    assert again["apps"]["rag"]["systems"]["slow"]["rows"]["1.2"][1].latency_s is None
    assert again["apps"]["rag"]["systems"]["fast"]["rows"]["low"] == fast["rows"]["low"]  # type: ignore[index]
    again["command"], again["wall_s"] = "second", 2.0
    first = sweep_files.read(tmp_path) | {"command": "first", "wall_s": 1.0}
    first["apps"]["cove"] = first["apps"]["rag"]
    merged = sweep_files.merge([first, again | {"apps": {"rag": again["apps"]["rag"]}}])
    assert set(merged["apps"]) == {"rag", "cove"} and merged["wall_s"] == 3.0
    assert merged["command"] == "first`, then `second"
    with pytest.raises(SystemExit, match="loads"):
        sweep_files.merge([first, {**again, "loads": [0.9]}])


def test_the_alto_system_starts_up_with_the_configs_llm_index_and_replicas() -> None:
    from benchmarks.systems import make_system
    from benchmarks.systems.alto import AltoSystem
    from benchmarks.systems.base import BenchConfig

    config = BenchConfig(
        app="rag",
        llm_url="http://127.0.0.1:9/v1",
        index_dir="/idx",
        replicas={"score": 2},
        workdir="/tmp/w",
    )
    system = AltoSystem(config, "127.0.0.1:1")
    assert system.app_ref.startswith("workers.rag:build('rag-")  # fresh topics each run
    cmd = system.command(Path("/tmp/ready"))
    assert cmd[2:5] == ["alto_stream.cli", "up", system.app_ref]
    for flag in (["--llm", "openai"], ["--replicas", "score=2"], ["--ready-file", "/tmp/ready"]):
        assert any(cmd[i : i + 2] == flag for i in range(len(cmd))), flag
    env = system.environment()
    assert env["ALTO_LLM_URL"] == "http://127.0.0.1:9/v1" and env["ALTO_LLM_PRIORITY"] == "1"
    assert env["ALTO_INDEX_DIR"] == "/idx" and env["ALTO_LLM_BACKEND"] == "openai"
    assert system.topology.plan(PARTIAL_STAGE["rag"]).output_topic.endswith(".generate")
    limited = AltoSystem(replace(config, admission=3), "127.0.0.1:1")
    cmd = limited.command(Path("/tmp/ready"))
    assert cmd[cmd.index("--admission") + 1] == "3"
    admitting = make_system("alto-admit4", config, bootstrap="127.0.0.1:1")
    assert admitting.name == "alto-admit4"
    cmd = admitting.command(Path("/tmp/ready"))  # type: ignore[attr-defined]
    assert cmd[cmd.index("--admission") + 1] == "4"
    assert "--admission" not in system.command(Path("/tmp/ready"))
    # alto-admit takes the limit given (the sweep's, per app), and needs one.
    given = make_system("alto-admit", replace(config, admission=5), bootstrap="127.0.0.1:1")
    cmd = given.command(Path("/tmp/ready"))  # type: ignore[attr-defined]
    assert cmd[cmd.index("--admission") + 1] == "5"
    with pytest.raises(AltoError, match="--admission"):
        make_system("alto-admit", config, bootstrap="127.0.0.1:1")
    # The first stage's outputs are read (for alto.admitted) only with a limit.
    assert given._first_topics() == [given.topology.plan("retrieve").output_topic]  # type: ignore[attr-defined]
    assert system._first_topics() == []
    with pytest.raises(AltoError, match="unknown app"):
        AltoSystem(replace(config, app="nope"), "127.0.0.1:1")


def test_the_real_model_server_is_llama_cpp_server_with_the_packaged_gemma() -> None:
    from benchmarks.systems import EngineProcess

    cmd = EngineProcess(llama=True).command()
    assert cmd[1:3] == ["-m", "llama_cpp.server"]
    assert cmd[cmd.index("--model") + 1].endswith(".gguf")
    assert cmd[cmd.index("--interrupt_requests") + 1] == "False"  # else calls cut each other
    assert EngineProcess().command()[1:3] == ["-m", "benchmarks.engine"]


def test_bench_names_an_app_or_a_benchmark_or_fails_clearly() -> None:
    from typer.testing import CliRunner

    from alto_stream.cli import app as cli

    result = CliRunner().invoke(cli, ["bench", "nope"])
    assert result.exit_code != 0
    assert "no benchmark or app 'nope'" in result.output
    result = CliRunner().invoke(cli, ["bench", "rag", "--system", "langgraph-x-postgres"])
    assert result.exit_code != 0 and "bad system" in result.output


@pytest.mark.parametrize("system", ["alto", "alto-admit3"])
def test_every_alto_system_finds_the_default_broker(
    system: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Like every other command, without -b: ALTO_BOOTSTRAP_SERVERS or 127.0.0.1:9092. Only
    # plain "alto" looked for it: alto-admit3 failed with "needs a Kafka broker".
    from typer.testing import CliRunner

    from alto_stream.cli import app as cli
    from alto_stream.cli import bench_apps

    asked: list[str | None] = []

    def connect(bootstrap: str | None) -> Any:
        asked.append(bootstrap)
        raise SystemExit(3)  # stop before anything starts

    monkeypatch.setattr(bench_apps, "connect", connect)
    monkeypatch.delenv("ALTO_BOOTSTRAP_SERVERS", raising=False)  # (make test sets it)
    result = CliRunner().invoke(cli, ["bench", "fanout", "--system", system, "--queries", "1"])
    assert result.exit_code == 3 and asked == [None]


async def test_an_alto_query_whose_final_is_an_error_marker_is_a_failed_row() -> None:
    # A LangGraph run that raises (fanout's decomposition the model got wrong) is a row
    # with an error; alto's query ends with an error marker, which the bench counted as a
    # fast completion (the real-model sweep: 0.5-1.9 s "latencies" flattered alto's p50).
    from alto_stream.ancestry import Ancestry, Kind
    from alto_stream.message import Envelope
    from alto_stream.transport import InRecord
    from benchmarks.systems.alto import AltoSystem, QueryFailedError
    from benchmarks.systems.base import BenchConfig

    system = AltoSystem(BenchConfig(app="fanout", llm_url="http://127.0.0.1:9/v1"), "x:1")
    codec = system.topology.codec()
    final = system.topology.plan("final").output_topic
    failed = Ancestry.root("q-bad").marker(Kind.ERROR, "ParseError: no questions")
    done = Envelope(Ancestry.root("q-good"), {"json": '{"answer": "x"}'}, "alto.Json", "final")

    def record(envelope: Envelope) -> InRecord:
        value, headers = codec.encode(envelope)
        return InRecord(final, 0, 0, None, value, headers, time.time())

    class Reader:
        def __init__(self) -> None:
            self.batches = [[record(Envelope(failed, None, None, "final")), record(done)]]

        async def fetch(self, timeout: float, max_records: int) -> list[InRecord]:
            if self.batches:
                return self.batches.pop()
            await asyncio.sleep(timeout)
            return []

        async def stop(self) -> None:
            pass

    loop = asyncio.get_running_loop()
    futures = {q: loop.create_future() for q in ("q-bad", "q-good")}
    system._waiting.update({q: (f, lambda: None) for q, f in futures.items()})
    task = asyncio.create_task(system._dispatch(Reader()))  # type: ignore[arg-type]
    try:
        assert json.loads(await asyncio.wait_for(futures["q-good"], 5)) == {"answer": "x"}
        with pytest.raises(QueryFailedError, match="ERROR: ParseError: no questions"):
            await asyncio.wait_for(futures["q-bad"], 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class AskingSystem:
    """Answers with one LLM call to its config's URL, the query's time as priority."""

    name = "asking"

    def __init__(self, config: Any) -> None:
        self.config = config
        self.admitted: dict[str, float] = {}

    async def start(self) -> None:
        """Nothing to start."""

    async def run(self, query_id: str, question: str, on_partial: Callable[[], None]) -> str:
        from alto_stream.components.llm import Sampling
        from alto_stream.components.llm.base import Request
        from alto_stream.components.llm.openai_http import OpenAILLM

        llm = OpenAILLM(self.config.llm_url, priority=True)
        try:
            request = Request(query_id, priority=1)
            return await llm.complete(question, Sampling(max_tokens=4), request=request)
        finally:
            await llm.close()

    async def close(self) -> None:
        """Nothing to stop."""


async def test_a_gated_system_calls_the_engine_through_a_gate_process(tmp_path: Path) -> None:
    import httpx

    from benchmarks.systems import EngineProcess
    from benchmarks.systems.base import BenchConfig
    from benchmarks.systems.gated import GatedSystem

    assert resolve("alto+gate") is not resolve("alto")  # and a bad inner name fails now:
    with pytest.raises(AltoError, match="bad system"):
        resolve("nope+gate")
    fast = EngineOptions(capacity=2, first_token=0.001, token_rate=2000.0)
    async with EngineProcess(fast) as engine:
        config = BenchConfig(app="rag", llm_url=engine.url, workdir=str(tmp_path), gate_slots=2)
        system = GatedSystem("asking+gate", config, AskingSystem)
        assert system.inner.config.llm_url == system.url != engine.url
        assert system.command()[-4:] == ["--slots", "2", "--port", str(system.port)]
        await system.start()
        try:
            answers = await asyncio.gather(
                *(system.run(f"q{n}", "Why is the sky blue?", lambda: None) for n in range(3))
            )
            async with httpx.AsyncClient() as http:
                stats = (await http.get(system.url.removesuffix("/v1") + "/stats")).json()
        finally:
            await system.close()
        assert system._process is not None and system._process.poll() is not None
    assert all(answer.strip() for answer in answers)
    assert stats["served"] == 3 and stats["slots"] == 2


async def test_a_server_that_exits_at_once_is_a_clear_error_naming_its_log(tmp_path: Path) -> None:
    import sys

    from benchmarks.systems.process import start

    log = tmp_path / "server.log"
    with pytest.raises(AltoError, match=r"the test server did not start \(log: .*server\.log\)"):
        await start(
            [sys.executable, "-c", "print('no port for me'); raise SystemExit(3)"],
            probe="http://127.0.0.1:9/none",
            what="the test server",
            log=log,
            within=20.0,
        )
    assert "no port for me" in log.read_text()


def test_the_bench_gives_up_on_a_worker_that_keeps_failing_to_start(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "generate-0.log").write_text("INFO started\n")
    error = "error: /i is not an index (no manifest.json); fix: alto-stream index build"
    (logs / "retrieve-0.log").write_text(f"INFO starting\n{error}\n" * 2)
    assert failing_to_start(logs) is None  # twice: perhaps a broker that was coming up
    with (logs / "retrieve-0.log").open("a") as f:
        f.write(f"INFO starting\n{error}\n")
    assert failing_to_start(logs) == f"worker retrieve-0 failed to start 3 times: {error}"
