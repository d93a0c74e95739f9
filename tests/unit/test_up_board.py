"""`up`'s board: when the app is ready, and lag queries that are never cut short."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from alto_stream.cli.up_board import Board
from alto_stream.errors import TransportError
from alto_stream.ops.metrics import write_stats
from alto_stream.ops.supervisor import ProcessSpec, Supervisor
from alto_stream.transport import Partition
from workers import textflow

pytestmark = pytest.mark.timeout(30)

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


class SlowOps:
    """Lag answers after ``delay`` seconds; notes the queries (and the cancelled ones)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.finished = 0
        self.cancelled = 0
        self.asked: list[list[str]] = []
        """The groups of each query."""

    async def group_lags(
        self, inputs: dict[str, list[str]], *, timeout: float | None = None
    ) -> dict[str, dict[Partition, int]]:
        self.asked.append(sorted(inputs))
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished += 1
        return {group: {(topics[0], 0): 2} for group, topics in inputs.items()}


def _board(tmp_path: Path, counts: dict[str, int], ops: Any = None) -> tuple[Board, Supervisor]:
    topology = textflow.build("board").topology()
    specs = [
        ProcessSpec(f"{stage}-{i}", SLEEP, stage=stage, stats_file=tmp_path / f"{stage}-{i}.json")
        for stage, n in counts.items()
        for i in range(n)
    ]
    supervisor = Supervisor(specs)
    board = Board(topology, supervisor, ops or SlowOps(0.0), counts, dict.fromkeys(counts, 3))
    return board, supervisor


def _report(board: Board, supervisor: Supervisor, assigned: dict[str, int | None]) -> None:
    for child in supervisor.children:
        name = child.spec.name
        data = {"pid": child.pid, "stage": child.spec.stage, "assigned": assigned[name]}
        assert child.spec.stats_file is not None
        write_stats(child.spec.stats_file, data)
    board.read_stats()


def test_ready_once_every_worker_has_its_share(tmp_path: Path) -> None:
    board, supervisor = _board(tmp_path, {"words": 1, "shout": 2})
    supervisor.start()
    try:
        assert not board.ready()  # no stats yet
        _report(board, supervisor, {"words-0": 3, "shout-0": 3, "shout-1": 0})
        assert not board.ready()  # shout-1 joined: a rebalance is still to come
        _report(board, supervisor, {"words-0": 3, "shout-0": 2, "shout-1": None})
        assert not board.ready()
        _report(board, supervisor, {"words-0": 3, "shout-0": 2, "shout-1": 1})
        assert board.ready()
        victim = supervisor.children[2]
        assert victim.process is not None
        victim.process.kill()
        victim.process.wait()
        assert not board.ready()  # its stats are those of a process that is gone
    finally:
        supervisor.stop(timeout=5)


async def test_a_slow_lag_query_is_never_cancelled(tmp_path: Path) -> None:
    ops = SlowOps(2.5)  # longer than the 2 s the board used to give a lag query
    board, _ = _board(tmp_path, {"words": 1, "shout": 1}, ops)
    await board.refresh()  # starts the lag queries in the background: no waiting here
    assert ops.finished == 0
    await board.refresh()  # one at a time
    await board.settle()
    assert (ops.finished, ops.cancelled) == (1, 0)
    assert board.lag == {"words": 2, "shout": 2}
    await board.refresh(force=True)
    assert (ops.finished, ops.cancelled) == (2, 0)


async def test_one_lag_query_covers_every_stage(tmp_path: Path) -> None:
    # Before, each refresh of the live table opened an admin client and a consumer per
    # stage (12 Kafka clients every 2 s for textflow's six stages).
    counts = dict.fromkeys(textflow.build("board").topology().stages, 1)
    ops = SlowOps(0.0)
    board, _ = _board(tmp_path, counts, ops)
    await board.refresh(force=True)
    groups = sorted(board.topology.stages[stage].group for stage in counts)
    assert ops.asked == [groups]
    assert board.lag == dict.fromkeys(counts, 2)


async def test_without_a_live_table_lag_is_asked_only_at_the_end(tmp_path: Path) -> None:
    # `up --json` (or not on a terminal) shows lag only in its summary: asking Kafka every
    # 2 s (an admin client and a consumer per stage) cost the idle `up` ~12% of a core.
    ops = SlowOps(0.0)
    topology = textflow.build("board").topology()
    counts = {"words": 1, "shout": 1}
    board = Board(topology, Supervisor([]), ops, counts, lag_every=None)
    for _ in range(3):
        await board.refresh()
    await board.settle()
    assert ops.finished == 0 and board.lag == {"words": None, "shout": None}
    await board.refresh(force=True)
    assert ops.finished == 1 and board.lag == {"words": 2, "shout": 2}


def test_metrics_ports_left_in_time_wait_are_free_to_up() -> None:
    # Found by a new user: `up --metrics-base-port P` run again right after a run whose
    # metrics a scraper read said "ports ... are in use" for a minute: the old server's
    # side of each scrape sat in TIME_WAIT, which a bind without SO_REUSEADDR refuses.
    import socket

    from alto_stream.cli.up_cmd import _check_ports
    from alto_stream.errors import ConfigError

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", 0))
    server.listen()
    port = server.getsockname()[1]
    with pytest.raises(ConfigError, match=f"metrics ports {port} are in use"):
        _check_ports(range(port, port + 1))  # a live listener is taken
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server closes first: its side goes to TIME_WAIT
    client.close()
    server.close()
    _check_ports(range(port, port + 1))


def test_ready_when_other_processes_share_the_groups(tmp_path: Path) -> None:
    # Found by a new user following docs/hosts.md: with `worker` processes of the same
    # stages elsewhere, `up`'s workers never held all partitions, and up never said
    # ready (no line, no --ready-file) however long it ran.
    board, supervisor = _board(tmp_path, {"words": 1, "shout": 1})
    supervisor.start()
    try:
        _report(board, supervisor, {"words-0": 1, "shout-0": 2})  # 3 partitions each
        assert not board.ready(now=100.0)
        assert not board.ready(now=103.0)  # not yet stable for 5 s
        _report(board, supervisor, {"words-0": 2, "shout-0": 2})  # a rebalance moved one
        assert not board.ready(now=104.0)
        assert not board.ready(now=108.0)
        assert board.ready(now=109.5) and board.shared
    finally:
        supervisor.stop(timeout=5)


def test_workers_beyond_the_partitions_are_named_not_called_ready(tmp_path: Path) -> None:
    # Found by a new user: `up --replicas llm=5` on 3 partitions said "ready: every
    # worker has its partitions" although 2 workers held none, and nothing warned.
    from alto_stream.cli.up_cmd import standby_lines

    board, supervisor = _board(tmp_path, {"words": 1, "shout": 5})
    assert standby_lines(board.counts, board.partitions, board.topology) == [
        "stage shout: 5 workers for the 3 partitions of board.words: 2 will hold no "
        "partition and stand by; fix: --replicas shout=3, or more partitions (docs/hosts.md)"
    ]
    supervisor.start()
    try:
        _report(board, supervisor, {"words-0": 3, "shout-0": 1, "shout-1": 1, "shout-2": 1,
                                    "shout-3": 0, "shout-4": 0})  # fmt: skip
        assert board.ready()
        board.ready_after = 1.25
        assert board.ready_line() == (
            "ready: every partition has a worker (1.2 s); standing by with none: "
            "2 of shout's 5 workers"
        )
    finally:
        supervisor.stop(timeout=5)
    board, _ = _board(tmp_path, {"words": 1, "shout": 3})
    assert standby_lines(board.counts, board.partitions, board.topology) == []
    board.ready_after = 2.0
    assert board.ready_line() == "ready: every worker has its partitions (2.0 s)"


class DownOps(SlowOps):
    """Lag queries that fail as with a broker node down (until ``down`` is False)."""

    def __init__(self) -> None:
        super().__init__(0.0)
        self.down = True
        self.timeouts: list[float | None] = []

    async def group_lags(
        self, inputs: dict[str, list[str]], *, timeout: float | None = None
    ) -> dict[str, dict[Partition, int]]:
        self.timeouts.append(timeout)
        if self.down:
            raise TransportError("Kafka failed to read the offsets of groups ...") from (
                TimeoutError()
            )
        return await super().group_lags(inputs, timeout=timeout)


async def test_lag_unknown_says_why_and_queries_are_bounded(tmp_path: Path) -> None:
    # Found by a new user: with one node of three down, every stage's lag read "?" and
    # nothing said why (and a query could hang for aiokafka's 40 s).
    from alto_stream.cli.up_board import LAG_TIMEOUT

    ops = DownOps()
    board, _ = _board(tmp_path, {"words": 1, "shout": 1}, ops)
    await board.refresh(force=True)
    assert ops.timeouts == [LAG_TIMEOUT]
    assert board.lag == {"words": None, "shout": None}
    assert board.lag_note is not None
    assert board.lag_note.endswith(f"lag unknown: Kafka did not answer within {LAG_TIMEOUT:g} s")
    console = Console(file=io.StringIO(), width=120)
    console.print(board.render())
    assert "lag unknown: Kafka did not answer" in console.file.getvalue()  # type: ignore[attr-defined]
    ops.down = False
    await board.refresh(force=True)
    assert board.lag == {"words": 2, "shout": 2} and board.lag_note is None


def test_why_names_an_aiokafka_error_once() -> None:
    from aiokafka.errors import NodeNotReadyError

    from alto_stream.cli.up_board import _why

    error = TransportError("Kafka failed to ...")
    error.__cause__ = NodeNotReadyError("node 2 is down")  # aiokafka's str() names the class
    assert _why(error) == "NodeNotReadyError: node 2 is down"
    error.__cause__ = ConnectionRefusedError("refused")
    assert _why(error) == "ConnectionRefusedError: refused"


def test_counts_go_on_over_a_workers_restart(tmp_path: Path) -> None:
    # Found in a soak: after a kill -9, `up` restarted the worker and its table row
    # went back to 0 consumed and 2 errors, against 69 dead letters in its topic.
    board, supervisor = _board(tmp_path, {"words": 1})
    stats = tmp_path / "words-0.json"

    def report(pid: int, consumed: int, errors: int, in_flight: int) -> None:
        data = {"pid": pid, "stage": "words", "consumed": consumed, "errors": errors}
        write_stats(stats, {**data, "in_flight": in_flight})
        board.read_stats()

    report(101, 50, 3, 7)
    report(101, 90, 5, 4)
    report(202, 10, 1, 2)  # restarted: a new process counts from 0
    report(202, 30, 2, 1)
    totals = board.totals("words")
    assert (totals["consumed"], totals["errors"], totals["in_flight"]) == (120, 7, 1)
    report(303, 5, 0, 0)
    assert board.totals("words")["consumed"] == 125
    assert supervisor.children  # no process started: the board reads files only
