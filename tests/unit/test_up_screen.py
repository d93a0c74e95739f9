"""`up`'s live table: a log line never waits for the display, and still shows above it.

`up` froze for good after a broker node died: the garbage collector freed an
unclosed aiokafka connection in the middle of one of the table's prints (the
console's lock held), its finalizer logged through asyncio, the line went to rich's
stand-in for stderr and waited for the display's lock, which the refresh thread
held while it waited for the console's. Here the line comes from another thread
while the console is writing: it must not wait for it.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from alto_stream.cli.up_board import Board, Screen
from alto_stream.ops import logs
from alto_stream.ops.logs import HeldLines, hold_stderr
from alto_stream.ops.supervisor import Supervisor
from workers import textflow

pytestmark = pytest.mark.timeout(30)

LEAK = "Unclosed AIOKafkaConnection"


class Terminal(io.StringIO):
    """The console's file: while ``armed``, a write logs a line from another thread."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger
        self.armed = False
        self.waited: bool | None = None
        """Whether that line was still waiting after 2 s (the console's write held up)."""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.armed and threading.current_thread() is threading.main_thread():
            self.armed = False  # the console's lock is held here
            other = threading.Thread(target=self.logger.error, args=(LEAK,), daemon=True)
            other.start()
            other.join(2.0)
            self.waited = other.is_alive()
        return super().write(text)


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A logger writing as ``configure``'s handler does: to whatever sys.stderr is."""
    log = logging.getLogger("test.up_screen")
    handler = logs._Handler()
    handler.setFormatter(logs.TextFormatter())
    log.addHandler(handler)
    log.propagate = False
    yield log
    log.removeHandler(handler)


def _board(tmp_path: Path) -> Board:
    topology = textflow.build("screen").topology()
    return Board(topology, Supervisor([]), None, {"words": 1})  # type: ignore[arg-type]


def test_a_line_logged_while_the_table_prints_neither_waits_nor_is_lost(
    tmp_path: Path, logger: logging.Logger
) -> None:
    terminal = Terminal(logger)
    console = Console(file=terminal, force_terminal=True, width=100)
    screen = Screen(_board(tmp_path), console)
    screen.start()
    try:
        terminal.armed = True
        console.print("up's own line")
        assert terminal.waited is False, "a log line waited for the console's lock"
        screen.show()
    finally:
        screen.stop()
    shown = terminal.getvalue()
    assert LEAK in shown
    assert shown.index(LEAK) < shown.rindex("app screen")  # above the table as last drawn


def test_held_lines_keep_an_unfinished_line_for_later() -> None:
    held = HeldLines(io.StringIO())
    held.write("one\ntw")
    assert held.lines() == ["one"]
    held.write("o\nthree")
    assert held.lines() == ["two"]
    assert held.rest() == "three"
    assert held.lines() == []


def test_hold_stderr_writes_what_is_left_when_it_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    real = io.StringIO()
    monkeypatch.setattr(sys, "stderr", real)
    with hold_stderr() as held:
        assert sys.stderr is held
        print("kept", file=sys.stderr)
        print("taken", file=sys.stderr)
        assert held.lines() == ["kept", "taken"]
        print("left", file=sys.stderr)
    assert sys.stderr is real
    assert real.getvalue() == "left\n"
