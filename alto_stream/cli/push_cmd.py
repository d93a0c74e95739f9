"""``alto-stream push APP TEXT``: push queries onto an app's input topic, follow their results."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from alto_stream.cli._opsutil import Bootstrap, JsonFlag, connect, emit_json, handled, out
from alto_stream.errors import ConfigError
from alto_stream.ops import eventloop

if TYPE_CHECKING:
    from alto_stream.client import Client

__all__ = ["push", "register"]


def push(
    app_ref: Annotated[str, typer.Argument(metavar="APP", help="The app, as module:attribute.")],
    texts: Annotated[
        list[str] | None, typer.Argument(metavar="[TEXT]...", help='Queries as {"text": TEXT}.')
    ] = None,
    value: Annotated[
        str | None, typer.Option("--value", help="One query as a JSON object.")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="A JSON-lines file of queries ('-': stdin)."),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-F", help="Stream the results until every query ends.")
    ] = False,
    partials: Annotated[
        bool | None,
        typer.Option(
            "--partials/--no-partials",
            help="Show partial results too [default: only when following one query].",
            show_default=False,
        ),
    ] = None,
    partials_from: Annotated[
        list[str] | None,
        typer.Option(
            "--partials-from",
            metavar="STAGE",
            help="Show this inner stage's records as partial results too, e.g. a generation "
            "stage's sentences as they are written (repeatable; implies --partials).",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the results when following.", min=0.1)
    ] = 60.0,
    bootstrap: Bootstrap = None,
    as_json: JsonFlag = False,
) -> None:
    """Push queries (TEXT, --value or --file) onto APP's input topic and print their ids.

    With --follow, results stream as they arrive (exit status 1 if a query does
    not finish within --timeout).
    """
    from alto_stream.client import Client
    from alto_stream.ops.loading import keep_schema_versions, load_topology
    from alto_stream.ops.queries import read_labelled_queries
    from alto_stream.ops.topics import require_topics
    from alto_stream.runtime.kafka import KafkaOps

    with handled():
        loaded, topology = load_topology(app_ref)
        keep_schema_versions(loaded)
        labelled = read_labelled_queries(
            texts or [], value, file, topology.input_schema, topology.codec().codec
        )
        for stage in partials_from or ():
            topology.plan(stage)  # an unknown stage: ConfigError naming the stages
        transport = connect(bootstrap)
        ops = KafkaOps(transport)

        async def run() -> None:
            needed = [topology.input_topic, *topology.output_topics().values()]
            await require_topics(ops, needed if follow else needed[:1], app_ref=app_ref)
            since, pushed_at = time.time() - 1.0, time.time()
            async with Client(topology, transport) as client:
                ids = await _push(client, labelled)
                for query_id in ids:
                    if as_json:
                        emit_json({"query_id": query_id})
                    else:
                        out.print(query_id)
                if follow:
                    from alto_stream.cli._opsview import follow_results

                    await follow_results(
                        client,
                        ids,
                        since=since,
                        limit=timeout,
                        partials=(len(ids) == 1 or bool(partials_from))
                        if partials is None
                        else partials,
                        as_json=as_json,
                        pushed_at=pushed_at,
                        partials_from=partials_from or (),
                    )

        eventloop.run(run())


def register(root: typer.Typer) -> None:
    """Add ``push`` to the root command."""
    root.command("push")(push)


_CLIENTS_LABEL = re.compile(r"^(the query|query (\d+) of \d+)\b")


async def _push(client: Client, labelled: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Push the queries; an error of the client's names its query as the command's input does.

    The client checks the record with its headers (the ancestry, the schema), a few
    bytes more than the value read checked: a line just under the limit failed as
    "query 3 of 3 is 1,000,086 bytes" rather than naming FILE:LINE.
    """
    try:
        return await client.push_many([query for _, query in labelled])
    except ConfigError as exc:
        found = _CLIENTS_LABEL.match(str(exc))
        if found is None:
            raise
        label = labelled[int(found.group(2) or 1) - 1][0]
        raise ConfigError(label + str(exc)[found.end() :]) from exc
