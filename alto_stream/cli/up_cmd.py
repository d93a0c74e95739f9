"""``alto-stream up APP``: every stage of an app as worker processes, under a supervisor.

Topics are created (or checked) first. Each replica is a ``worker`` process
with its own log file, stats file and (with ``--metrics-base-port``) metrics
port; crashed workers are restarted with backoff. A live table shows, per
stage, the replicas alive, records in flight, consumed and written, errors
and the consumer group's lag (or why it is unknown). Ctrl-C or SIGTERM stops every
worker cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from alto_stream.cli._opsutil import Bootstrap, connect, emit_json, err, handled, out
from alto_stream.cli.worker_cmd import (
    AdmissionOption,
    AdmissionTargetOption,
    Delivery,
    DeliveryOption,
    HeartbeatOption,
    LLMOption,
    MaxPollOption,
    SessionTimeoutOption,
    group_timing,
    use_admission,
    use_llm,
    worker_argv,
)

if TYPE_CHECKING:
    from rich.console import Console

    from alto_stream.app import Topology
    from alto_stream.ops.logs import HeldLines
    from alto_stream.ops.supervisor import ProcessSpec, Supervisor
    from alto_stream.runtime.kafka import KafkaOps
    from alto_stream.settings import GroupTiming

__all__ = ["parse_replicas", "register", "standby_lines", "static_id", "up"]


def parse_replicas(items: Sequence[str], stages: Sequence[str]) -> dict[str, int]:
    """``["shout=3", "2"]`` -> replicas per stage (a bare number sets every stage)."""
    from alto_stream.errors import ConfigError

    counts = dict.fromkeys(stages, 1)
    for item in items:
        stage, sep, number = item.rpartition("=")
        if not number.isdigit() or int(number) < 1:
            raise ConfigError(f"bad --replicas {item!r}: expected STAGE=N or N, N >= 1")
        if not sep:
            counts = dict.fromkeys(stages, int(number))
        elif stage not in counts:
            raise ConfigError(
                f"bad --replicas {item!r}: no stage {stage!r}; the stages are: {', '.join(stages)}"
            )
        else:
            counts[stage] = int(number)
    return counts


def up(
    app_ref: Annotated[str, typer.Argument(metavar="APP", help="The app, as module:attribute.")],
    replicas: Annotated[
        list[str] | None,
        typer.Option(
            "--replicas", "-r", help="STAGE=N workers for a stage, or N for all (repeatable)."
        ),
    ] = None,
    delivery: DeliveryOption = Delivery.AT_LEAST_ONCE,
    metrics_base_port: Annotated[
        int | None,
        typer.Option(min=1, help="Serve each worker's metrics on its own port from this one."),
    ] = None,
    log_dir: Annotated[
        Path | None,
        typer.Option(help="Where worker logs and stats go [default: a new dir in ALTO_HOME/runs]."),
    ] = None,
    duration: Annotated[
        float | None, typer.Option(min=0.0, help="Stop everything after this many seconds.")
    ] = None,
    llm: LLMOption = None,
    admission: AdmissionOption = None,
    admission_target: AdmissionTargetOption = None,
    session_timeout: SessionTimeoutOption = None,
    heartbeat_interval: HeartbeatOption = None,
    max_poll_interval: MaxPollOption = None,
    static_membership: Annotated[
        bool,
        typer.Option(
            "--static-membership",
            help="Give each worker a group instance id (APP.STAGE.HOST.REPLICA): a crashed "
            "worker restarted within the session timeout gets its partitions back without a "
            "rebalance; a stopped one holds them until the session timeout.",
        ),
    ] = False,
    host_id: Annotated[
        str | None,
        typer.Option(
            help="The HOST in --static-membership's ids: each `up` of one app needs its own "
            "(letters, digits, . _ -) [default: this machine's host name].",
            show_default=False,
        ),
    ] = None,
    replication: Annotated[
        int | None,
        typer.Option(min=1, help="Replication of topics created that the topic file does not set."),
    ] = None,
    min_insync_replicas: Annotated[
        int | None,
        typer.Option(
            min=1, help="min.insync.replicas of topics created that the topic file does not set."
        ),
    ] = None,
    bootstrap: Bootstrap = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="No live table: print a JSON summary at the end.")
    ] = False,
    ready_file: Annotated[
        Path | None,
        typer.Option(
            help="Write this file once every worker has its partitions (for scripts to wait on)."
        ),
    ] = None,
) -> None:
    """Start every stage of APP as worker processes and keep them running until Ctrl-C.

    Once every worker runs and every stage's input partitions are assigned among
    its workers, a line says "ready" (and --ready-file is written).
    """
    from alto_stream.ops.loading import load_topology
    from alto_stream.ops.supervisor import Supervisor, supervise
    from alto_stream.ops.topics import app_topic_specs, apply_topics
    from alto_stream.runtime.kafka import KafkaOps
    from alto_stream.settings import data_home

    use_llm(llm)  # the workers inherit it
    use_admission(admission, admission_target)
    with handled():
        _, topology = load_topology(app_ref)
        counts = parse_replicas(replicas or [], list(topology.stages))
        timing = _without_instance_id(
            group_timing(session_timeout, heartbeat_interval, max_poll_interval)
        )
        static_host = _host_id(host_id) if static_membership else None
        if static_host is not None:  # held until up returns (closed with the file)
            _ids_lock = _hold_instance_ids(topology.app, static_host)
        transport = connect(bootstrap)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        folder = log_dir or data_home() / "runs" / f"{topology.app}-{stamp}"
        specs = _specs(
            app_ref,
            counts,
            transport.bootstrap,
            delivery,
            metrics_base_port,
            folder,
            timing,
            None if static_host is None else (topology.app, static_host),
        )
        if metrics_base_port is not None:
            _check_ports(range(metrics_base_port, metrics_base_port + len(specs)))
        ops = KafkaOps(transport)
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)

        async def prepare() -> tuple[list[Any], dict[str, int]]:
            checks = await apply_topics(
                ops,
                app_topic_specs(
                    topology, replication=replication, min_insync_replicas=min_insync_replicas
                ),
            )
            inputs = {plan.input_topic for plan in topology.stages.values()}
            states = await ops.describe_topics(sorted(inputs))
            sizes = {name: state.partitions for name, state in states.items()}
            return checks, {s: sizes.get(p.input_topic, 0) for s, p in topology.stages.items()}

        checks, partitions = asyncio.run(prepare())
        resized = []
        for check in checks:
            if check.status == "created":
                err.print(f"created topic {check.spec.name}")
            elif check.status == "updated":
                err.print(f"topic {check.spec.name}: {'; '.join(check.differences)}")
            elif check.status == "differs" and all(
                d.startswith("partitions:") for d in check.differences
            ):
                resized.append(check)  # `topics apply --partitions N` made them: fine
            elif check.status == "differs":
                err.print(
                    f"[yellow]topic {check.spec.name} differs: {'; '.join(check.differences)}"
                )
        if resized:
            counts_seen = sorted({c.state.partitions for c in resized if c.state is not None})
            err.print(
                f"{len(resized)} topics have {' or '.join(map(str, counts_seen))} partitions, "
                f"not the {resized[0].spec.partitions} up would create: used as they are"
            )
        supervisor = Supervisor(specs)
        for line in standby_lines(counts, partitions, topology):
            err.print(f"[yellow]{line}")
        shows_live = out.is_terminal and not as_json
        lag_every = 2.0 if shows_live else None  # no live table: lag only in the summary
        board = _Board(topology, supervisor, ops, counts, partitions, lag_every=lag_every)
        err.print(f"{len(specs)} workers of app {topology.app}; logs in {folder}")
        live = _Screen(board, out) if shows_live else None
        if live is not None:
            live.start()

        began = time.monotonic()

        async def tick() -> None:
            await board.refresh()
            for event in supervisor.events[board.shown :]:
                line = f"{time.strftime('%H:%M:%S')} {event}"
                board.log.append(line)
                if live is None and not as_json:
                    err.print(line)
            board.shown = len(supervisor.events)
            if board.ready_after is None and board.ready():
                board.ready_after = time.monotonic() - began
                line = board.ready_line()
                board.log.append(f"{time.strftime('%H:%M:%S')} {line}")
                if live is None:
                    err.print(line)
                if ready_file is not None:
                    ready_file.write_text(json.dumps({"ready_after": board.ready_after}) + "\n")
            if live is not None:
                live.show()

        async def run() -> None:
            try:
                await supervise(supervisor, duration=duration, tick=tick, interval=0.5)
            finally:
                await board.settle()

        try:
            asyncio.run(run())
        finally:
            if live is not None:
                live.stop()
        asyncio.run(board.refresh(force=True))
        if as_json:
            emit_json(board.summary())
        elif live is None:
            out.print(board.render())
        err.print("all workers stopped")


def standby_lines(
    counts: Mapping[str, int], partitions: Mapping[str, int], topology: Topology
) -> list[str]:
    """A warning per stage with more workers than its input has partitions.

    A partition has one reader in a group: the workers beyond the partition count
    hold none and stand by (they take over when another leaves).
    """
    lines = []
    for stage, wanted in counts.items():
        total = partitions.get(stage, 0)
        if 0 < total < wanted:
            topic = topology.stages[stage].input_topic
            lines.append(
                f"stage {stage}: {wanted} workers for the {total} partitions of {topic}: "
                f"{wanted - total} will hold no partition and stand by; fix: "
                f"--replicas {stage}={total}, or more partitions (docs/hosts.md)"
            )
    return lines


_SHARED_STABLE = 5.0
"""Seconds our workers' partitions must stay as they are to be ready in a shared group."""


def _check_ports(ports: range) -> None:
    """:class:`ConfigError` naming the metrics ports already taken (before any worker starts)."""
    import socket

    from alto_stream.errors import ConfigError

    busy = []
    for port in ports:
        with socket.socket() as sock:
            # As prometheus-client's server binds: with SO_REUSEADDR, so that the sockets a
            # stopped run left in TIME_WAIT (a scraper's connections) do not count as taken.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                busy.append(port)
    if busy:
        raise ConfigError(
            f"metrics ports {', '.join(map(str, busy))} are in use (the workers need "
            f"{ports.start}-{ports.stop - 1}); fix: another --metrics-base-port"
        )


def static_id(app: str, host: str, stage: str, replica: int) -> str:
    """The group instance id `up --static-membership` gives a worker: APP.STAGE.HOST.REPLICA.

    The host keeps the ids of two `up` of one app on two hosts apart (the same ids
    made each pair of workers take each other's place); the rest keeps them the
    same across restarts of one host's `up`, which is the point of static ids.
    """
    return f"{app}.{stage}.{host}.{replica}"


def _without_instance_id(timing: GroupTiming) -> GroupTiming:
    """``timing`` without ``ALTO_GROUP_INSTANCE_ID``: one worker's id, never every worker's."""
    import dataclasses

    if timing.instance_id is None:
        return timing
    err.print(
        "[yellow]ALTO_GROUP_INSTANCE_ID is one worker's id: up ignores it "
        "(--static-membership gives each worker its own)"
    )
    return dataclasses.replace(timing, instance_id=None)


_HOST_ID = re.compile(r"[A-Za-z0-9._-]+")
"""What Kafka accepts in a group instance id (as in a topic name)."""


def _host_id(given: str | None) -> str:
    """``--host-id``, else this machine's host name (characters Kafka refuses made ``-``)."""
    import socket

    from alto_stream.errors import ConfigError

    if given is None:
        return re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()) or "host"
    if not _HOST_ID.fullmatch(given):
        raise ConfigError(
            f"bad --host-id {given!r}: a group instance id takes letters, digits, '.', '_' "
            "and '-' only; fix: a --host-id made of those"
        )
    return given


def _hold_instance_ids(app: str, host: str) -> IO[bytes]:
    """A lock on this host's static ids of ``app``, held while the returned file is open.

    Two `up --static-membership` of one app with one host id give their workers
    the same ids, and each pair of workers takes the other's place until one
    stops: refused here, before any worker starts, when both run on this machine
    (with the same ALTO_HOME).
    """
    import fcntl

    from alto_stream.errors import ConfigError
    from alto_stream.settings import data_home

    path = data_home() / "static-ids" / f"{app}.{host}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.open("a+b")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise ConfigError(
            f"another `up --static-membership` of app {app!r} on this machine gives its "
            f"workers the group instance ids {app}.STAGE.{host}.N; two workers with one id "
            "take each other's place; fix: --host-id NAME, one of its own for each `up`"
        ) from None
    return lock


def _specs(
    app_ref: str,
    counts: Mapping[str, int],
    bootstrap: str,
    delivery: Delivery,
    metrics_base_port: int | None,
    folder: Path,
    timing: GroupTiming,
    static_ids: tuple[str, str] | None,
) -> list[ProcessSpec]:
    """One worker process per replica; with ``static_ids`` (app, host) each its instance id."""
    import dataclasses

    from alto_stream.ops.supervisor import ProcessSpec

    specs: list[ProcessSpec] = []
    for stage, n in counts.items():
        for i in range(n):
            port = None if metrics_base_port is None else metrics_base_port + len(specs)
            stats = folder / f"{stage}-{i}.json"
            argv = worker_argv(
                app_ref,
                stage,
                bootstrap=bootstrap,
                delivery=delivery.value,
                replica=str(i),
                metrics_port=port,
                stats_file=stats,
                timing=timing
                if static_ids is None
                else dataclasses.replace(timing, instance_id=static_id(*static_ids, stage, i)),
            )
            specs.append(
                ProcessSpec(
                    f"{stage}-{i}",
                    argv,
                    stage=stage,
                    log_file=folder / f"{stage}-{i}.log",
                    stats_file=stats,
                )
            )
    return specs


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


class _Screen:
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

    def __init__(self, board: _Board, console: Console) -> None:
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


class _Board:
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
                if data is not None:
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
            line += "; workers of other processes hold the rest of their group's"
        return line

    def totals(self, stage: str) -> dict[str, int]:
        rows = [s for name, s in self.stats.items() if s.get("stage") == stage]
        return {f: sum(int(r.get(f) or 0) for r in rows) for f in _FIELDS}

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


def register(root: typer.Typer) -> None:
    """Add ``up`` to the root command."""
    root.command("up")(up)
