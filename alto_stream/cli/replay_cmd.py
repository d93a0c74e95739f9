"""``alto-stream replay TOPIC``: re-read records, print them or re-feed them into a stage.

Re-fed records run under new query ids (one per original query, every
ancestry id changed), so the replay's results are its own and the original
query's aggregates and outputs stay untouched; its results are followed like
``push --follow``.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from typing import TYPE_CHECKING, Annotated

import typer

from alto_stream.cli._opsutil import (
    Bootstrap,
    JsonFlag,
    connect,
    emit_json,
    err,
    handled,
    out,
    parse_time,
    require_partitions,
    say_app_decodes,
)
from alto_stream.cli.tail_cmd import Partitions

if TYPE_CHECKING:
    from alto_stream.app import Topology
    from alto_stream.ops.records import DecodedRecord
    from alto_stream.ops.replay import ReplayTarget
    from alto_stream.runtime.kafka import KafkaTransport
    from alto_stream.transport import Transport

__all__ = ["register", "replay"]


def replay(
    topic: Annotated[str, typer.Argument(help="The topic to re-read.")],
    from_offset: Annotated[
        int | None,
        typer.Option(help="Start at this offset in each partition (negative: back from the end)."),
    ] = None,
    from_time: Annotated[
        str | None, typer.Option(help="Start at this time (epoch seconds, ISO 8601, or -10m).")
    ] = None,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the first record.")
    ] = False,
    to_offset: Annotated[
        int | None, typer.Option(help="Stop before this offset (in each partition).")
    ] = None,
    to_time: Annotated[str | None, typer.Option(help="Stop after this time.")] = None,
    partition: Partitions = None,
    query: Annotated[
        list[str] | None,
        typer.Option("--query", "-q", help="Only this query's records (repeatable)."),
    ] = None,
    to_stage: Annotated[
        str | None, typer.Option(help="Re-feed the records into this stage (needs --app).")
    ] = None,
    app_ref: Annotated[
        str | None,
        typer.Option(
            "--app",
            help="The app of --to-stage, as module:attribute (with --print: decode with its "
            "own schemas too).",
        ),
    ] = None,
    print_only: Annotated[
        bool, typer.Option("--print", help="Only print the records (decoded).")
    ] = False,
    follow: Annotated[
        bool, typer.Option("--follow/--no-follow", help="Follow the replay's results.")
    ] = True,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to wait for the replay's results.")
    ] = 60.0,
    bootstrap: Bootstrap = None,
    as_json: JsonFlag = False,
) -> None:
    """Re-read TOPIC's records: print them, or re-feed them into a stage as new queries.

    --print decodes them (with --app APP, those of the app's own schemas too);
    --to-stage STAGE --app APP writes them to the stage's input under new query
    ids (the original query stays untouched) and follows the replay's results
    like push --follow.
    """
    from alto_stream.errors import ConfigError
    from alto_stream.ops.loading import load_topology
    from alto_stream.ops.records import ReadWindow, read_records
    from alto_stream.ops.topics import require_topics
    from alto_stream.runtime.kafka import KafkaOps

    with handled():
        start_time = parse_time(from_time) if from_time is not None else None
        if sum([from_beginning, from_offset is not None, start_time is not None]) != 1:
            raise ConfigError("give one start: --from-offset N, --from-time T or --from-beginning")
        if print_only == (to_stage is not None):
            raise ConfigError("give one action: --to-stage STAGE (with --app APP) or --print")
        if to_stage is not None and app_ref is None:
            raise ConfigError("--to-stage needs --app APP: the app the stage belongs to")
        end_time = parse_time(to_time) if to_time is not None else None
        _check_range(from_offset, to_offset, start_time, end_time)
        window = ReadWindow(
            offset=from_offset,
            start_time=start_time,
            to_offset=to_offset,
            to_time=end_time,
            partitions=tuple(partition) if partition else None,
            query_id=frozenset(query) if query else None,
        )
        target = _target(app_ref, to_stage) if to_stage is not None else None
        transport = connect(bootstrap)
        ops = KafkaOps(transport)

        # With --app, the app's own schemas are known too.
        codec = load_topology(app_ref)[1].codec() if app_ref is not None else None

        async def run() -> None:
            await require_topics(ops, [topic])
            await require_partitions(transport, [topic], partition)
            items = [item async for item in read_records(ops, [topic], window, codec)]
            if print_only:
                if not items:
                    raise ConfigError(
                        "no record in that range (check the offsets, time, query); "
                        f"fix: `alto-stream topics describe {topic}` shows its offsets"
                    )
                _print(items, as_json)
                if app_ref is None:
                    say_app_decodes(items)
                return
            if target is not None and app_ref is not None:
                await _refeed(transport, app_ref, target, items, follow, timeout, as_json)

        asyncio.run(run())


def _check_range(
    from_offset: int | None, to_offset: int | None, from_time: float | None, to_time: float | None
) -> None:
    """:class:`ConfigError` for a range that holds nothing (its end at or before its start)."""
    from alto_stream.errors import ConfigError

    if from_offset is not None and to_offset is not None and 0 <= to_offset <= from_offset:
        raise ConfigError(
            f"--to-offset {to_offset} is not after --from-offset {from_offset}, so the range "
            "is empty (--to-offset is exclusive); fix: a --to-offset above --from-offset"
        )
    if from_time is not None and to_time is not None and to_time < from_time:
        raise ConfigError("--to-time is before --from-time, so the range is empty; fix: swap them")


def _target(app_ref: str | None, stage: str) -> ReplayTarget:
    from alto_stream.ops.loading import load_topology
    from alto_stream.ops.replay import replay_target

    _, topology = load_topology(app_ref or "")
    return replay_target(topology, stage)


def _print(items: list[DecodedRecord], as_json: bool) -> None:
    from alto_stream.cli._opsview import record_text

    for item in items:
        if as_json:
            emit_json(item.to_dict())
        else:
            out.print(record_text(item), soft_wrap=True)  # one line per record, as tail


async def _refeed(
    transport: KafkaTransport,
    app_ref: str,
    target: ReplayTarget,
    records: list[DecodedRecord],
    follow: bool,
    limit: float,
    as_json: bool,
) -> None:
    from alto_stream.cli._opsview import follow_results
    from alto_stream.client import Client
    from alto_stream.ops.loading import load_topology
    from alto_stream.ops.replay import send_replay, split_above

    since, pushed_at = time.time() - 1.0, time.time()
    rerooter = await send_replay(transport, target, records, app_ref=app_ref)
    for original, (new_id, _) in rerooter.replays.items():
        if as_json:
            emit_json({"replay_of": original, "query_id": new_id, "stage": target.stage})
        else:
            out.print(f"{original} -> {new_id}")
    if not as_json:
        err.print(
            f"replayed {len(records)} records of {len(rerooter.replays)} queries into stage "
            f"{target.stage} ({target.topic})"
        )
    hint = None
    if rerooter.unfinishable:
        _, topology = load_topology(app_ref)
        first = ", ".join(rerooter.unfinishable[:3])
        split = split_above(topology, target.stage)
        made = f"split {split!r} made" if split is not None else "their split made"
        hint = (  # the fix a time-out names too
            "replay the whole query from the input: " + target.whole_query("ID", app_ref)
        )
        err.print(
            f"warning: the records replayed of {len(rerooter.unfinishable)} queries ({first}) "
            f"do not say how many records {made} (no END marker, no count), so the aggregate "
            f"that closes it waits for the rest for ever; fix: {hint}",
            style="yellow",
        )
    if follow:
        if hint is None:
            ids = rerooter.replay_ids
            look = ids[0] if len(ids) == 1 else "ID"
            hint = (
                "a longer --timeout, or check the workers (alto-stream up); see how far the "
                f"replay got: alto-stream trace {shlex.quote(look)} --app {shlex.quote(app_ref)}"
            )
        _, topology = load_topology(app_ref)

        async def why_late() -> str | None:
            return await _failed_again(transport, topology, rerooter.replay_ids, since)

        async with Client(topology, transport) as client:
            await follow_results(
                client,
                rerooter.replay_ids,
                since=since,
                limit=limit,
                partials=len(rerooter.replays) == 1,
                as_json=as_json,
                pushed_at=pushed_at,
                hint=hint,
                why_late=why_late,
            )


async def _failed_again(
    transport: Transport, topology: Topology, ids: list[str], since: float
) -> str | None:
    """The first dead letter the replay's queries made since ``since``, in words (None: none).

    A replay into a stage that still fails timed out with "nothing of it reached
    ...", hiding that it had failed again at once (a new dead letter, which only
    `trace` showed).
    """
    from alto_stream.errors import AltoError
    from alto_stream.ops.records import OpsReader, ReadWindow, read_records
    from alto_stream.runtime.failures import letter_source
    from alto_stream.runtime.kafka import KafkaOps, KafkaTransport
    from alto_stream.runtime.memory import MemoryOps, MemoryTransport

    ops: OpsReader
    if isinstance(transport, KafkaTransport):
        ops = KafkaOps(transport)
    elif isinstance(transport, MemoryTransport):  # the tests' and run_in_memory's
        ops = MemoryOps(transport)
    else:
        return None
    topics = [plan.dead_letter_topic for plan in topology.stages.values()]
    window = ReadWindow(start_time=since, query_id=frozenset(ids))
    try:
        async for item in read_records(ops, topics, window, topology.codec()):
            letter = item.envelope.value if item.envelope is not None else None
            if letter:
                return (
                    f"the replay failed again at stage {letter.get('stage')}: "
                    f"{letter.get('error')} (dead letter {item.record.topic}"
                    f"[{item.record.partition}]@{item.record.offset} of "
                    f"{letter_source(letter)})"
                )
    except AltoError:
        return None  # the time-out stands on its own
    return None


def register(root: typer.Typer) -> None:
    """Add ``replay`` to the root command."""
    root.command("replay")(replay)
