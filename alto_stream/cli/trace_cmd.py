"""``alto-stream trace QUERY_ID --app APP``: one query's ancestry tree, with stage timings."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from alto_stream.cli._opsutil import (
    Bootstrap,
    JsonFlag,
    connect,
    emit_json,
    handled,
    out,
    parse_time,
)

if TYPE_CHECKING:
    from alto_stream.ops.trace import Fragment, Hop, Trace

__all__ = ["register", "trace"]

_CRITICAL = "bold magenta"


def trace(
    query_id: Annotated[str, typer.Argument(help="The query's id (as push printed it).")],
    app_ref: Annotated[str, typer.Option("--app", "-a", help="The app, as module:attribute.")],
    from_time: Annotated[
        str | None,
        typer.Option(help="Read records from this time on [default: every record kept]."),
    ] = None,
    bootstrap: Bootstrap = None,
    as_json: JsonFlag = False,
) -> None:
    """Show one query's ancestry tree, with the time each fragment spent in each stage.

    Every fragment from APP's topics, the stage that wrote it, when, and how
    long it took from its input; the critical path is highlighted.
    """
    from alto_stream.ops.loading import load_topology
    from alto_stream.ops.records import ReadWindow, read_records
    from alto_stream.ops.topics import require_topics
    from alto_stream.ops.trace import app_trace_topics, build_trace
    from alto_stream.runtime.kafka import KafkaOps

    with handled():
        _, topology = load_topology(app_ref)
        start = parse_time(from_time) if from_time is not None else None
        ops = KafkaOps(connect(bootstrap))
        topics = list(app_trace_topics(topology))

        async def run() -> Trace:
            await require_topics(ops, topics, app_ref=app_ref)
            window = ReadWindow(start_time=start, query_id=query_id)
            items = [item async for item in read_records(ops, topics, window, topology.codec())]
            return build_trace(topology, query_id, items)

        result = asyncio.run(run())
    if as_json:
        emit_json(result.to_dict())
        return
    out.print(_tree(result))
    out.print(_stage_table(result))


def _ms(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds * 1000:.1f}ms"


def _hop_text(hop: Hop, start: float) -> Text:
    """``stage +at (took)``: ``at`` from the trace's start, never negative."""
    from alto_stream.cli._opsview import kind_style

    envelope = hop.item.envelope
    assert envelope is not None
    style = _CRITICAL if hop.critical else "cyan"
    text = Text(hop.stage, style=style)
    text.append(f" +{_ms(max(hop.time - start, 0.0))}", style="dim")
    if hop.took is not None:
        text.append(f" ({_ms(hop.took)})", style=_CRITICAL if hop.critical else "")
    if envelope.kind.is_marker:
        text.append(f" {envelope.kind.value}", style=kind_style(envelope.kind.value))
        if envelope.ancestry.reason:
            from alto_stream.cli._opsview import shown

            text.append(f" {shown(envelope.ancestry.reason)}", style="dim")
    return text


def _label(fragment: Fragment, start: float, *, attempt: bool = False) -> Text:
    """``attempt``: name the split's attempt (its parent was split more than once)."""
    from alto_stream.cli._opsview import preview

    index = ".".join(str(i) for i in fragment.index) or "query"
    label = Text(f"[{index}] ", style=_CRITICAL if fragment.critical else "bold")
    label.append(f"{fragment.id[:12]} ", style="dim")
    if attempt and fragment.attempt is not None:
        label.append(f"attempt {fragment.attempt[:8]} ", style="magenta")
    for i, hop in enumerate(fragment.hops):
        if i:
            label.append(" → ", style="dim")
        label.append(_hop_text(hop, start))
    values = [
        h.item.envelope.value for h in fragment.hops if h.item.envelope and h.item.envelope.value
    ]
    if values:
        label.append("  " + preview(values[-1], 60), style="green")
    return label


def _tree(result: Trace) -> Tree:
    from alto_stream.cli._opsview import shown

    start = result.start
    head = Text(f"query {shown(result.query_id)}", style="bold")
    if result.replay_of:
        head.append(f" (replay of {result.replay_of})", style="magenta")
    head.append(f"  {len(result.hops)} records, ")
    head.append(
        "latency " + _ms(result.latency) if result.latency is not None else "not finished",
        style="bold green" if result.latency is not None else "yellow",
    )
    if result.admission_wait is not None:
        head.append(f", admitted after {_ms(result.admission_wait)}", style="cyan")
    if len(result.finals) > 1:  # a new user saw one of two different finals, unsaid
        agree = "the same value" if result.final_values == 1 else "different values"
        head.append(
            f"\n{len(result.finals)} finals, with {agree} (the first is shown): a record "
            "written twice, or the app changed under the query (docs/operations.md, "
            "'Upgrading an app')",
            style="yellow",
        )
    tree = Tree(head)

    def add(node: Tree, fragment: Fragment, attempt: bool = False) -> None:
        branch = node.add(_label(fragment, start, attempt=attempt))
        # A fragment's children may come from several splits (rag: the documents a
        # query is split into, then its answer's sentences): attempts are named only
        # where one stage's split ran more than once.
        runs: dict[str, set[str | None]] = {}
        for child in fragment.children:
            runs.setdefault(_split_stage(child), set()).add(child.attempt)
        for child in fragment.children:
            add(branch, child, len(runs[_split_stage(child)]) > 1)

    add(tree, result.root)
    return tree


def _split_stage(fragment: Fragment) -> str:
    """The stage that wrote the fragment first: the split that made it."""
    return fragment.hops[0].stage if fragment.hops else ""


def _stage_table(result: Trace) -> Table:
    table = Table(
        title="time per stage (span: from its first input to its last record, wall clock; "
        "critical path in magenta)",
        caption="times: Kafka record timestamps (whole ms)",
    )
    for column in ("stage", "records", "span", "longest", "on critical path"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for timing in result.stages():
        table.add_row(
            timing.stage,
            str(timing.records),
            _ms(timing.span),
            _ms(timing.longest),
            Text(_ms(timing.on_critical_path), style=_CRITICAL if timing.on_critical_path else ""),
        )
    return table


def register(root: typer.Typer) -> None:
    """Add ``trace`` to the root command."""
    root.command("trace")(trace)
