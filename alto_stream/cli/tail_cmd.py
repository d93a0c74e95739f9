"""``alto-stream tail TOPIC``: decoded records with their ancestry, as they arrive."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

import typer

from alto_stream.cli._opsutil import (
    Bootstrap,
    connect,
    emit_json,
    handled,
    out,
    parse_time,
    require_partitions,
    say_app_decodes,
)

__all__ = ["Partitions", "register", "tail"]

Partitions = Annotated[
    list[int] | None,
    typer.Option("--partition", "-p", help="Only this partition (repeatable).", min=0),
]


def tail(
    topics: Annotated[list[str], typer.Argument(metavar="TOPIC...", help="Topics to read.")],
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the first record.")
    ] = False,
    from_offset: Annotated[
        int | None,
        typer.Option(help="Start at this offset in each partition (negative: back from the end)."),
    ] = None,
    from_time: Annotated[
        str | None,
        typer.Option(help="Start at this time (epoch seconds, ISO 8601, or -10m)."),
    ] = None,
    partition: Partitions = None,
    query: Annotated[
        list[str] | None,
        typer.Option("--query", "-q", help="Only this query's records (repeatable)."),
    ] = None,
    max_records: Annotated[
        int | None, typer.Option("--max", "-m", min=1, help="Stop after this many records.")
    ] = None,
    follow: Annotated[
        bool,
        typer.Option("--follow/--no-follow", help="Keep waiting for new records at the end."),
    ] = True,
    duration: Annotated[
        float | None, typer.Option(min=0.0, help="Stop after this many seconds.")
    ] = None,
    bootstrap: Bootstrap = None,
    app_ref: Annotated[
        str | None,
        typer.Option("--app", "-a", help="Decode with this app's own schemas too (module:attr)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Print TOPIC's records decoded, with their ancestry (id, depth, index, kind, stage).

    Starts at the end (new records only) unless told otherwise; Ctrl-C stops.
    """
    from alto_stream.cli._opsview import record_text
    from alto_stream.ops.loading import load_topology
    from alto_stream.ops.records import ReadWindow, read_records
    from alto_stream.ops.topics import require_topics
    from alto_stream.runtime.kafka import KafkaOps

    with handled():
        start_time = parse_time(from_time) if from_time is not None else None
        starts = sum([from_beginning, from_offset is not None, start_time is not None])
        if starts > 1:
            from alto_stream.errors import ConfigError

            raise ConfigError(
                "choose one of --from-beginning, --from-offset and --from-time, got several"
            )
        window = ReadWindow(
            from_end=starts == 0,
            offset=from_offset,
            start_time=start_time,
            partitions=tuple(partition) if partition else None,
            query_id=frozenset(query) if query else None,
            limit=max_records,
            follow=follow,
            duration=duration,
        )
        codec = load_topology(app_ref)[1].codec() if app_ref is not None else None
        ops = KafkaOps(connect(bootstrap))

        async def run() -> None:
            await require_topics(ops, topics)
            await require_partitions(ops.transport, topics, partition)
            said, shown = app_ref is not None, 0
            async for item in read_records(ops, topics, window, codec):
                shown += 1
                if as_json:
                    emit_json(item.to_dict())
                else:
                    out.print(record_text(item), soft_wrap=True)  # one line per record
                if not said:
                    said = say_app_decodes([item])
            if not shown and from_offset is not None and not follow:
                from alto_stream.errors import ConfigError

                # As replay: an offset past the end is a mistake, not an empty topic.
                raise ConfigError(
                    f"no record at offset {from_offset} or after it (check the offset, "
                    f"query); fix: `alto-stream topics describe {topics[0]}` shows its offsets"
                )

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run())


def register(root: typer.Typer) -> None:
    """Add ``tail`` to the root command."""
    root.command("tail")(tail)
