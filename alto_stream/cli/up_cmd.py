"""``alto-stream up APP``: every stage of an app as worker processes, under a supervisor.

Topics are created (or checked) first. Each replica is a ``worker`` process
with its own log file, stats file and (with ``--metrics-base-port``) metrics
port; crashed workers are restarted with backoff. A live table shows, per
stage, the replicas alive, records in flight, consumed and written, errors
and the consumer group's lag (or why it is unknown). Ctrl-C or SIGTERM stops every
worker cleanly.

The live table is :mod:`alto_stream.cli.up_board`; ``--static-membership``'s
group instance ids are :mod:`alto_stream.cli.up_static`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from alto_stream.cli._opsutil import Bootstrap, connect, emit_json, err, fail, handled, out
from alto_stream.cli.up_board import Board, Screen
from alto_stream.cli.up_static import hold_instance_ids as _hold_instance_ids
from alto_stream.cli.up_static import host_id_of as _host_id
from alto_stream.cli.up_static import static_id
from alto_stream.cli.up_static import without_instance_id as _without_instance_id
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
    from alto_stream.app import Topology
    from alto_stream.ops.supervisor import ProcessSpec
    from alto_stream.settings import GroupTiming

__all__ = ["parse_replicas", "register", "say", "standby_lines", "static_id", "up"]


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
    from alto_stream.ops.topics import (
        app_topic_specs,
        apply_topics,
        left_behind,
        left_behind_note,
    )
    from alto_stream.runtime.kafka import KafkaOps
    from alto_stream.settings import data_home

    use_llm(llm)  # the workers inherit it
    use_admission(admission, admission_target)
    with handled():
        loaded, topology = load_topology(app_ref)
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
                    topology,
                    replication=replication,
                    min_insync_replicas=min_insync_replicas,
                    app_home=loaded.folder,
                ),
            )
            inputs = {plan.input_topic for plan in topology.stages.values()}
            states = await ops.describe_topics(sorted(inputs))
            sizes = {name: state.partitions for name, state in states.items()}
            old = await left_behind(ops, topology)
            if old:
                err.print(f"[yellow]{escape(left_behind_note(topology.app, old, app_ref))}[/]")
            return checks, {s: sizes.get(p.input_topic, 0) for s, p in topology.stages.items()}

        checks, partitions = asyncio.run(prepare())
        resized = []
        for check in checks:
            if check.status == "created":
                err.print(f"created topic {check.spec.name}")
            elif check.status == "updated":
                say(f"topic {check.spec.name}: {'; '.join(check.differences)}")
            elif check.status == "differs" and all(
                d.startswith("partitions:") for d in check.differences
            ):
                resized.append(check)  # `topics apply --partitions N` made them: fine
            elif check.status == "differs":
                say(f"topic {check.spec.name} differs: {'; '.join(check.differences)}", "yellow")
        if resized:
            counts_seen = sorted({c.state.partitions for c in resized if c.state is not None})
            err.print(
                f"{len(resized)} topics have {' or '.join(map(str, counts_seen))} partitions, "
                f"not the {resized[0].spec.partitions} up would create: used as they are"
            )
        supervisor = Supervisor(specs)
        for line in standby_lines(counts, partitions, topology):
            say(line, "yellow")
        shows_live = out.is_terminal and not as_json
        lag_every = 2.0 if shows_live else None  # no live table: lag only in the summary
        board = Board(topology, supervisor, ops, counts, partitions, lag_every=lag_every)
        err.print(f"{len(specs)} workers of app {topology.app}; logs in {folder}")
        live = Screen(board, out) if shows_live else None
        if live is not None:
            live.start()

        began = time.monotonic()

        async def tick() -> None:
            await board.refresh()
            for event in supervisor.events[board.shown :]:
                line = f"{time.strftime('%H:%M:%S')} {event}"
                board.log.append(line)
                if live is None:  # with --json too: stderr, as they happen
                    say(line)
            board.shown = len(supervisor.events)
            if board.ready_after is None and board.ready():
                board.ready_after = time.monotonic() - began
                line = board.ready_line()
                board.log.append(f"{time.strftime('%H:%M:%S')} {line}")
                if live is None:
                    say(line)
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
        if note := supervisor.refused_note():
            fail(note)


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


def say(line: str, style: str | None = None) -> None:
    """One of up's lines on stderr, as it is: no Rich markup in it.

    Workers' errors hold brackets (``pip install 'alto-stream[llm]'``), which Rich
    took for markup and dropped: the advice printed read ``'alto-stream'``.
    """
    err.print(line, style=style, markup=False, highlight=False)


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


def register(root: typer.Typer) -> None:
    """Add ``up`` to the root command."""
    root.command("up")(up)
