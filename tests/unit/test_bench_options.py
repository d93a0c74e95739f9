"""``alto-stream bench APP``: system names and options checked before anything starts."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from alto_stream.cli import app as cli
from alto_stream.cli import bench_apps
from alto_stream.errors import ConfigError
from benchmarks.systems import check_options, parse_system

FORMS = {
    "alto": ("alto", None, "memory"),
    "alto-admit": ("alto", "admit", "memory"),
    "alto-admit3": ("alto", "admit3", "memory"),
    "langgraph-graph": ("langgraph", "graph", "memory"),
    "langgraph-fused-sqlite": ("langgraph", "fused", "sqlite"),
    "langgraph-functional": ("langgraph", "functional", "memory"),
}


@pytest.mark.parametrize("name", sorted(FORMS))
def test_every_documented_system_name_parses_with_and_without_gate(name: str) -> None:
    assert parse_system(name) == FORMS[name]
    assert parse_system(f"{name}+gate") == FORMS[name]


@pytest.mark.parametrize(
    "bad", ["lang", "alto-admit0", "alto+gate+gate", "langgraph-graph-postgres+gate", "+gate"]
)
def test_a_bad_system_name_is_bad_usage_that_lists_the_forms(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"bad system .*\+gate"):
        parse_system(bad)


def test_options_that_do_not_apply_to_the_system_are_refused() -> None:
    stages = ["decompose", "answer_sub"]
    with pytest.raises(ConfigError, match="--admission is for the alto systems"):
        check_options("langgraph-graph", admission=2, replicas={}, stages=stages)
    with pytest.raises(ConfigError, match="--replicas is for the alto systems"):
        check_options("langgraph-graph+gate", admission=None, replicas={"x": 2}, stages=stages)
    with pytest.raises(ConfigError, match="sets the admission limit to 3 but --admission is 5"):
        check_options("alto-admit3", admission=5, replicas={}, stages=stages)
    with pytest.raises(ConfigError, match="no stage 'nostage'; the stages are decompose, answer"):
        check_options("alto", admission=None, replicas={"nostage": 2}, stages=stages)
    check_options("alto-admit3+gate", admission=3, replicas={"decompose": 2}, stages=stages)
    check_options("alto-admit", admission=4, replicas={}, stages=stages)


def _run(
    monkeypatch: pytest.MonkeyPatch, *args: str, summary: dict[str, Any] | None = None
) -> tuple[Any, list[Any]]:
    """``bench`` with the broker and the run itself replaced: what it would have run."""
    ran: list[Any] = []
    summary = summary or {"engine": "emulated", "system": "x"}
    monkeypatch.setattr(bench_apps, "connect", lambda b: SimpleNamespace(bootstrap="kafka:9"))

    def run(coroutine: Any) -> dict[str, Any]:
        ran.append(coroutine.cr_frame.f_locals["options"])
        coroutine.close()
        return summary

    monkeypatch.setattr(bench_apps.eventloop, "run", run)
    return CliRunner().invoke(cli, ["bench", *args, "--json"]), ran


def test_bench_takes_gate_on_every_system(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALTO_BOOTSTRAP_SERVERS", raising=False)  # (set where a broker runs)
    for system in ("alto+gate", "alto-admit2+gate", "langgraph-graph-sqlite+gate"):
        result, ran = _run(monkeypatch, "fanout", "--system", system)
        assert result.exit_code == 0, result.output
        assert ran[0].system == system
    assert ran[0].bootstrap is None  # langgraph: no broker needed


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--system", "bogus"], r"bad system 'bogus'.*\+gate"),
        (["--system", "langgraph-graph", "--admission", "2"], "--admission is for the alto"),
        (["--system", "langgraph-graph", "--replicas", "answer_sub=2"], "--replicas is for"),
        (["--system", "alto-admit3", "--admission", "5"], "sets the admission limit to 3"),
        (["--replicas", "nostage=2"], "no stage 'nostage'; the stages are decompose"),
    ],
)
def test_bad_bench_usage_exits_2_before_starting_anything(
    monkeypatch: pytest.MonkeyPatch, args: list[str], says: str
) -> None:
    result, ran = _run(monkeypatch, "fanout", *args)
    assert result.exit_code == 2, result.output
    assert ran == []
    assert re.search(says, " ".join(result.output.split()))


def test_a_run_where_no_query_completed_exits_1_saying_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--engine`` of a dead server: every query failed; that is not a result."""
    summary = {"engine": "x", "system": "alto", "queries": 5, "completed": 0, "failed": 5}
    summary["first_error"] = "ConnectError: All connection attempts failed"
    result, _ = _run(monkeypatch, "fanout", "--system", "langgraph-graph", summary=summary)
    assert result.exit_code == 1
    assert "no query completed (5 of 5 failed); the first error: ConnectError" in result.output
    summary |= {"completed": 3, "failed": 2}
    result, _ = _run(monkeypatch, "fanout", "--system", "langgraph-graph", summary=summary)
    assert result.exit_code == 0
    assert "warning: 2 of 5 queries failed; the first error: ConnectError" in result.output


def test_the_summary_counts_the_failed_queries_and_keeps_the_first_error() -> None:
    from benchmarks.appbench import Row, summarize

    rows = [
        Row("a", "q", 0.0, latency_s=0.5),
        Row("b", "q", 0.1, error="boom"),
        Row("c", "q", 0.2, error="later"),
    ]
    summary = summarize(rows, system="s", app="rag", rate=1.0, slo_s=None, engine="e")
    assert (summary["completed"], summary["failed"], summary["first_error"]) == (1, 2, "boom")
