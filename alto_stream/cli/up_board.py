"""What ``alto-stream up`` shows while it runs: the live table and what it reads.

:class:`Board` reads the workers' stats files and asks Kafka for each stage's
lag; :class:`Screen` shows the board with rich's live display and prints the
log lines held from stderr above it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from rich.console import Console

    from alto_stream.app import Topology
    from alto_stream.ops.logs import HeldLines
    from alto_stream.ops.supervisor import Supervisor
    from alto_stream.runtime.kafka import KafkaOps

__all__ = ["LAG_TIMEOUT", "Board", "Screen"]

_SHARED_STABLE = 5.0
"""Seconds our workers' partitions must stay as they are to be ready in a shared group."""

LAG_TIMEOUT = 10.0
"""Seconds a lag query may take: then the table says Kafka did not answer (a node down)."""


def _why(exc: Exception) -> str:
    """Why a lag query failed, in a few words (the groups asked about left out)."""
    cause = exc.__cause__
    if isinstance(cause, TimeoutError):
        return f"Kafka did not answer within {LAG_TIMEOUT:g} s"
    if cause is None:
        return str(exc)
    name, text = type(cause).__name__, str(cause)
    if text.startswith(name):  # aiokafka's errors name themselves
        return text
    return f"{name}: {text}" if text else name


_FIELDS = ("consumed", "produced", "errors", "in_flight", "buffered", "fired")
_COUNTS = ("consumed", "produced", "errors", "fired")
"""The fields that count since a worker started (the others say what it holds now)."""


class Screen:
    """The live table, and above it the lines written to stderr while it is shown.

    While it runs, ``sys.stderr`` keeps what is written (:func:`~alto_stream.ops.logs.
    hold_stderr`: log lines, also those that a finalizer or another thread emits) and
    :meth:`show`, called from the up loop, prints them. Printed where they were
    written (rich's redirection of stderr into the display) a line could come from
    the garbage collector in the middle of a print, holding the console's lock, and
    wait for the display's lock, which its refresh thread held while it waited for
    the console's: ``up`` froze for good (its workers no longer restarted, SIGTERM
    ignored).
    """

    def __init__(self, board: Board, console: Console) -> None:
        from alto_stream.ops.logs import hold_stderr

        self.board = board
        self._hold = hold_stderr
        self._stack = contextlib.ExitStack()
        self._live = Live(
            board.render(),
            console=console,
            refresh_per_second=4,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._held: HeldLines | None = None

    def start(self) -> None:
        """Hold stderr's lines and show the table."""
        self._held = self._stack.enter_context(self._hold())
        self._stack.callback(self._live.stop)
        self._live.start()

    def show(self) -> None:
        """Print the lines written since the last call, and the board as it is now."""
        if self._held is not None and (lines := self._held.lines()):
            self._live.console.print(Text.from_ansi("\n".join(lines)))
        self._live.update(self.board.render())

    def stop(self) -> None:
        """Stop the table; what stderr still holds is written after it."""
        with self._stack:
            self.show()


class Board:
    """What the live table shows: stats files per worker, lag per stage, events."""

    def __init__(
        self,
        topology: Topology,
        supervisor: Supervisor,
        ops: KafkaOps,
        counts: Mapping[str, int],
        partitions: Mapping[str, int] | None = None,
        *,
        lag_every: float | None = 2.0,
    ) -> None:
        self.topology = topology
        self.supervisor = supervisor
        self.ops = ops
        self.counts = counts
        self.partitions = partitions or {}
        """Input partitions per stage (for :meth:`ready`)."""
        self.ready_after: float | None = None
        self.shared = False
        """Ready with a stage's partitions shared with workers of other processes."""
        self._held: list[tuple[str, tuple[int, ...]]] = []
        self._held_since = 0.0
        self.stats: dict[str, dict[str, Any]] = {}
        self._before: dict[str, dict[str, int]] = {}
        """Per worker: what its earlier processes (before a restart) had counted."""
        self.lag: dict[str, int | None] = dict.fromkeys(counts)
        self.lag_note: str | None = None
        """Why the lag is unknown ("?"), when the last query failed."""
        self.log: list[str] = []
        self.shown = 0
        self._lag_every = lag_every
        """Seconds between lag queries while running; None: only at the end (no live table)."""
        self._lag_due = 0.0
        self._lag_task: asyncio.Task[None] | None = None

    def read_stats(self) -> None:
        from alto_stream.ops.metrics import read_stats

        for child in self.supervisor.children:
            if child.spec.stats_file is not None:
                data = read_stats(child.spec.stats_file)
                if data is None:
                    continue
                # A restarted worker counts from 0 again: the table's consumed and
                # errors went back to 0 at each restart (2 errors shown, 69 dead letters).
                old = self.stats.get(child.spec.name)
                if old is not None and old.get("pid") != data.get("pid"):
                    before = self._before.setdefault(child.spec.name, dict.fromkeys(_COUNTS, 0))
                    for field in _COUNTS:
                        before[field] += int(old.get(field) or 0)
                self.stats[child.spec.name] = data

    async def refresh(self, *, force: bool = False) -> None:
        """Read the stats files; ask Kafka for lag every ``lag_every`` s (in the background)
        or now.

        A lag query opens an admin client and a consumer (for all the stages at once):
        with no live table to show it in, asking every 2 s (then a pair per stage) cost
        the idle ``up`` ~12% of a core and the broker more fetches, taken from the
        workers and the model on a small host.
        """
        self.read_stats()
        if force:
            await self.settle()
            await self._refresh_lag()
        elif self._lag_every is None:
            return
        elif time.monotonic() >= self._lag_due and (
            self._lag_task is None or self._lag_task.done()
        ):
            # Never cancelled half-way (a cancelled Kafka client start leaks its connections:
            # the "Unclosed AIOKafkaConsumer" warnings at exit); awaited by settle().
            self._lag_due = time.monotonic() + self._lag_every
            self._lag_task = asyncio.create_task(self._refresh_lag())

    async def settle(self, timeout: float = 15.0) -> None:
        """Wait for a lag query in flight (before its event loop ends)."""
        task, self._lag_task = self._lag_task, None
        if task is not None:
            await asyncio.wait([task], timeout=timeout)
            if not task.done():
                task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def _refresh_lag(self) -> None:
        plans = [self.topology.stages[stage] for stage in self.counts]
        try:
            lags = await self.ops.group_lags(
                {p.group: [p.input_topic] for p in plans}, timeout=LAG_TIMEOUT
            )
        except Exception as exc:  # the table goes on: "?", and why, until a query answers
            lags = {}
            self.lag_note = f"{time.strftime('%H:%M:%S')} lag unknown: {_why(exc)}"
        else:
            self.lag_note = None
        for plan in plans:
            lag = lags.get(plan.group)
            self.lag[plan.name] = None if lag is None else sum(lag.values())

    def ready(self, now: float | None = None) -> bool:
        """True when every worker runs and each stage's input partitions are spread among them.

        From the workers' stats files (current process ids only): their ready
        partitions add up to the input's, and none is idle while there are
        partitions enough for all (a rebalance still to come). When workers of
        other processes share a stage's group (another host's `up` or `worker`),
        ours never hold all its partitions: then ready once each of ours holds
        what it was given, unchanged for :data:`_SHARED_STABLE` seconds
        (:attr:`shared` says so).
        """
        now = time.monotonic() if now is None else now
        shared, held = False, []
        for stage, wanted in self.counts.items():
            total = self.partitions.get(stage)
            assigned = []
            for child in (c for c in self.supervisor.children if c.spec.stage == stage):
                data = self.stats.get(child.spec.name)
                if data is None or child.pid is None or data.get("pid") != child.pid:
                    return False
                if data.get("assigned") is None:
                    return False
                assigned.append(int(data["assigned"]))
            if not total or len(assigned) != wanted or sum(assigned) > total:
                return False
            held.append((stage, tuple(assigned)))
            if sum(assigned) < total:
                shared = True  # the rest are other processes' (or a rebalance is under way)
            elif wanted <= total and min(assigned) == 0:
                return False
        if not shared:
            return True
        if self._held != held:
            self._held, self._held_since = held, now
            return False
        self.shared = now - self._held_since >= _SHARED_STABLE
        return self.shared

    def ready_line(self) -> str:
        """What `up` says once :meth:`ready`: not "every worker" while some stand by."""
        idle = {
            stage: (wanted, total)
            for stage, wanted in self.counts.items()
            if 0 < (total := self.partitions.get(stage, 0)) < wanted
        }
        after = f"({self.ready_after or 0.0:.1f} s)"
        if idle:
            line = f"ready: every partition has a worker {after}; standing by with none: "
            line += ", ".join(f"{w - t} of {s}'s {w} workers" for s, (w, t) in idle.items())
        else:
            line = f"ready: every worker has its partitions {after}"
        if self.shared:
            line += (
                "; the rest of their groups' partitions are held outside this up (workers "
                "of other processes), or still being handed over"
            )
        return line

    def totals(self, stage: str) -> dict[str, int]:
        """The stage's figures over its workers, counts over their restarts too."""
        names = [name for name, s in self.stats.items() if s.get("stage") == stage]
        totals = {f: sum(int(self.stats[n].get(f) or 0) for n in names) for f in _FIELDS}
        for name in names:
            for field, value in self._before.get(name, {}).items():
                totals[field] += value
        return totals

    def summary(self) -> dict[str, Any]:
        stages = {}
        for stage, wanted in self.counts.items():
            children = [c for c in self.supervisor.children if c.spec.stage == stage]
            stages[stage] = {
                "replicas": wanted,
                "restarts": sum(c.restarts for c in children),
                "lag": self.lag.get(stage),
                **self.totals(stage),
            }
        return {
            "app": self.topology.app,
            "stages": stages,
            "ready_after": self.ready_after,
            "events": self.supervisor.events,
        }

    def render(self) -> Group:
        table = Table(title=f"app {self.topology.app}")
        for column in ("stage", "replicas", "in flight", "consumed", "written", "errors", "lag"):
            table.add_column(column, justify="left" if column == "stage" else "right")
        for stage, wanted in self.counts.items():
            children = [c for c in self.supervisor.children if c.spec.stage == stage]
            alive = sum(c.running for c in children)
            restarts = sum(c.restarts for c in children)
            t = self.totals(stage)
            lag = self.lag.get(stage)
            table.add_row(
                stage,
                Text(
                    f"{alive}/{wanted}" + (f" ({restarts} restarts)" if restarts else ""),
                    style="green" if alive == wanted else "yellow",
                ),
                str(t["in_flight"] + t["buffered"]),
                str(t["consumed"]),
                str(t["produced"]),
                Text(str(t["errors"]), style="red" if t["errors"] else ""),
                "?" if lag is None else str(lag),
            )
        events = Text("\n".join(self.log[-5:]), style="dim")
        if self.lag_note is None:
            return Group(table, events)
        return Group(table, Text(self.lag_note, style="yellow"), events)
