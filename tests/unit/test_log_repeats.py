"""The repeat limiter of aiokafka's lines: what it groups, what it counts, what it covers."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from aiokafka.errors import NodeNotReadyError, RequestTimedOutError

from alto_stream.ops import logs


def _record(
    at: float, msg: str, *args: object, name: str = "aiokafka.consumer.fetcher"
) -> logging.LogRecord:
    made = logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)
    made.created = at  # the fake clock: the filter reads only the record's time
    return made


def test_the_count_names_the_lines_it_dropped_and_when() -> None:
    # Found in a soak: after a 60 s SIGSTOP the first RequestTimedOutError said "(and 67
    # more like it in the last 10 s)": the 67 were NodeNotReadyError lines of an outage
    # two minutes earlier (one format string, "Failed fetch messages from %s: %s").
    repeats = logs.RepeatFilter(window=10.0)
    fetch = "Failed fetch messages from %s: %s"
    outage = [_record(100 + i / 10, fetch, 1, NodeNotReadyError("node 1")) for i in range(68)]
    assert [repeats.filter(r) for r in outage].count(True) == 1
    timed_out = _record(230.0, fetch, 1, RequestTimedOutError())
    assert repeats.filter(timed_out)
    assert timed_out.getMessage() == "Failed fetch messages from 1: [Error 7] RequestTimedOutError"
    # The next NodeNotReady line, two minutes on: its count says when those 67 were.
    again = _record(240.0, fetch, 1, NodeNotReadyError("node 1"))
    assert repeats.filter(again)
    assert again.getMessage().endswith("(and 67 more like it from 00:01:40Z to 00:01:46Z)")
    # Counted afresh from there: one more within the window, shown with the next.
    assert not repeats.filter(_record(245.0, fetch, 1, NodeNotReadyError("node 1")))
    last = _record(251.0, fetch, 1, NodeNotReadyError("node 1"))
    assert repeats.filter(last)
    assert last.getMessage().endswith("(and 1 more like it from 00:04:05Z to 00:04:05Z)")


def test_lines_that_differ_only_in_numbers_are_alike() -> None:
    repeats = logs.RepeatFilter(window=10.0)
    lines = [_record(100 + i, 'Unable connect to "%s:%s"', "127.0.0.1", 9000 + i) for i in range(3)]
    assert [repeats.filter(r) for r in lines] == [True, False, False]


@pytest.fixture
def configured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        logs.configure(logging.INFO, "text", stream=stream)
        yield stream
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)


def test_lines_lowered_to_info_are_limited_too(configured: io.StringIO) -> None:
    # Found in a soak: while the broker was down each worker logged ~10 lines a second of
    # "INFO ... Group Coordinator Request failed: NodeNotReadyError ... (retriable:
    # retrying)" (9,802 of 10,492 lines): lowered to INFO, they escaped the limiter.
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    for _ in range(100):
        coordinator.error("Group Coordinator Request failed: %s", NodeNotReadyError("(node id 1)"))
    (line,) = configured.getvalue().splitlines()
    assert " INFO " in line and "(retriable: retrying)" in line
