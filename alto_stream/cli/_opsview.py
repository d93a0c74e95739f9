"""How the operating commands show records and results (terminal and JSON lines)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from alto_stream.cli._opsutil import emit_json, err, fail, out

if TYPE_CHECKING:
    from alto_stream.client import Client, Result
    from alto_stream.ops.records import DecodedRecord

__all__ = ["follow_results", "kind_style", "preview", "record_text", "result_dict"]

_KIND_STYLE = {
    "DATA": "green",
    "END": "blue",
    "SKIP": "yellow",
    "ERROR": "bold red",
    "TIMEOUT": "magenta",
}


def kind_style(kind: str) -> str:
    """The colour of a record kind."""
    return _KIND_STYLE.get(kind, "white")


def preview(value: Any, limit: int = 100) -> str:
    """A one-line JSON preview of a value, cut at ``limit`` characters."""
    from alto_stream.ops.records import jsonable

    text = json.dumps(jsonable(value), ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clock(ts: float) -> str:
    """``HH:MM:SS.mmm`` of a timestamp (local time)."""
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S.%f")[:-3]


def record_text(item: DecodedRecord, *, width: int = 100) -> Text:
    """One record on one line: where, when, kind, stage, ancestry and value."""
    r = item.record
    line = Text(f"{r.topic}[{r.partition}]@{r.offset} ", style="dim")
    line.append(clock(r.timestamp) + " ")
    if item.envelope is None:
        line.append(f"undecodable: {item.error}", style="red")
        return line
    a = item.envelope.ancestry
    line.append(f"{a.kind.value:<7}", style=kind_style(a.kind.value))
    line.append(f"{item.envelope.stage or '-'} ", style="cyan")
    line.append(f"q={a.query_id} ")
    index = ".".join(str(i) for i in a.index) or "root"
    line.append(f"id={a.id[:12]} d={a.depth} [{index}]", style="dim")
    if a.path and a.path[-1].count is not None:
        line.append(f" count={a.path[-1].count}", style="blue")
    if a.replay_of:
        line.append(f" replay_of={a.replay_of}", style="magenta")
    if a.reason:
        line.append(f" reason={a.reason}", style=kind_style(a.kind.value))
    if item.envelope.value is not None:
        line.append(" " + preview(item.envelope.value, width))
    return line


def result_dict(result: Result) -> dict[str, Any]:
    """A JSON-ready form of a client result."""
    from alto_stream.ops.records import jsonable

    a = result.envelope.ancestry
    return {
        "query_id": result.query_id,
        "final": result.final,
        "stage": result.stage,
        "latency": result.latency,
        "kind": a.kind.value,
        "id": a.id,
        "index": list(a.index),
        "replay_of": a.replay_of,
        "value": jsonable(result.value),
        "reason": a.reason,
    }


def _result_text(result: Result) -> Text:
    a = result.envelope.ancestry
    if result.final:
        line = Text("final   ", style="bold green" if result.ok else "bold red")
    else:
        line = Text("partial ", style="dim")
    line.append(f"q={result.query_id} {result.stage} ", style="cyan")
    if not result.final:
        line.append(f"[{'.'.join(str(i) for i in a.index)}] ", style="dim")
    line.append(f"{result.latency:.3f}s ")
    if result.ok:
        line.append(preview(result.value, 200))
    else:
        line.append(f"{a.kind.value} {a.reason or ''}", style=kind_style(a.kind.value))
    return line


async def follow_results(
    client: Client,
    query_ids: Sequence[str],
    *,
    since: float,
    limit: float,
    partials: bool,
    as_json: bool,
) -> None:
    """Print the results of ``query_ids`` as they come; exit 1 if some miss ``limit`` seconds.

    More than one query shows a progress bar (on stderr) of finished queries.
    """
    progress = None
    if len(query_ids) > 1 and not as_json:
        progress = Progress(
            TextColumn("queries"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        task = progress.add_task("queries", total=len(query_ids))
        progress.start()
    started = time.monotonic()
    finished = 0
    try:
        async for result in client.follow(query_ids, timeout=limit, since=since, partials=partials):
            if as_json:
                emit_json(result_dict(result))
            elif progress is not None and out.is_terminal:  # one terminal: print above the bar
                progress.console.print(_result_text(result))
            else:
                out.print(_result_text(result))
            if result.final:
                finished += 1
                if progress is not None:
                    progress.update(task, completed=finished)
    except TimeoutError as exc:
        if progress is not None:
            progress.stop()
        fail(f"{exc}; fix: a longer --timeout, or check the workers (alto-stream up)", 1)
    if progress is not None:
        progress.stop()
    if not as_json:
        err.print(
            f"{finished} of {len(query_ids)} queries finished in {time.monotonic() - started:.2f}s"
        )
