"""How the operating commands show records and results (terminal and JSON lines)."""

from __future__ import annotations

import json
import time
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from alto_stream.cli._opsutil import emit_json, err, fail, out

if TYPE_CHECKING:
    from alto_stream.client import Client, Result
    from alto_stream.ops.records import DecodedRecord

__all__ = ["follow_results", "kind_style", "preview", "record_text", "result_dict", "shown"]

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
    """A one-line JSON preview of a value, cut at ``limit`` characters (see :func:`shown`)."""
    from alto_stream.ops.records import jsonable

    text = shown(json.dumps(jsonable(value), ensure_ascii=False, default=str))
    return text if len(text) <= limit else text[: limit - 1] + "…"


_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f"  # Arabic letter mark, left-to-right and right-to-left marks
    "\u202a\u202b\u202c\u202d\u202e"  # embeddings and overrides, and their end
    "\u2066\u2067\u2068\u2069"  # isolates, and their end
)


def shown(text: str) -> str:
    """``text`` safe on one line: control, line-break and bidi-control characters escaped.

    As ``repr`` writes them (``\\x00``, ``\\u202e``): raw, a NUL showed as a space
    and U+202E reversed the rest of the line.

    >>> shown("a\\x00b\\u202ec")
    'a\\\\x00b\\\\u202ec'
    """
    if text.isprintable():
        return text
    return "".join(_escaped(c) for c in text)


def _escaped(char: str) -> str:
    if char in _BIDI_CONTROLS or unicodedata.category(char) in ("Cc", "Zl", "Zp"):
        return repr(char)[1:-1]
    return char


def clock(ts: float) -> str:
    """``HH:MM:SS.mmm`` of a timestamp (local time)."""
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S.%f")[:-3]


def record_text(item: DecodedRecord, *, width: int = 100) -> Text:
    """One record on one line: where, when, kind, stage, ancestry and value."""
    r = item.record
    line = Text(f"{r.topic}[{r.partition}]@{r.offset} ", style="dim")
    line.append(clock(r.timestamp) + " ")
    if item.envelope is None:
        if item.entry is not None:
            line.append(f"changelog {shown(str(item.entry))}", style="dim")
        else:
            line.append(f"undecodable: {shown(str(item.error))}", style="red")
        return line
    a = item.envelope.ancestry
    line.append(f"{a.kind.value:<7}", style=kind_style(a.kind.value))
    line.append(f"{item.envelope.stage or '-'} ", style="cyan")
    line.append(f"q={_cut(shown(a.query_id), _ID_SHOWN)} ")
    index = ".".join(str(i) for i in a.index) or "root"
    line.append(f"id={a.id[:12]} d={a.depth} [{index}]", style="dim")
    if a.path and a.path[-1].count is not None:
        line.append(f" count={a.path[-1].count}", style="blue")
    if a.replay_of:
        line.append(f" replay_of={a.replay_of}", style="magenta")
    if a.reason:
        line.append(f" reason={shown(a.reason)}", style=kind_style(a.kind.value))
    value = item.envelope.value
    if value is not None and item.envelope.schema == "alto.DeadLetter":
        from alto_stream.runtime.failures import letter_source

        # What the reader needs whole: where the record came from and why it failed.
        line.append(
            f" dead letter of {shown(letter_source(value))} "
            f"at stage {shown(str(value.get('stage')))}: ",
        )
        line.append(shown(str(value.get("error"))), style="red")
    elif value is not None:
        line.append(" " + preview(value, width))
    return line


_ID_SHOWN = 64
"""The most characters of a query id a line shows (a hand-written one may be huge)."""


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
        "rerun": result.rerun,
        "value": jsonable(result.value),
        "reason": a.reason,
    }


def _result_text(result: Result) -> Text:
    a = result.envelope.ancestry
    if result.final:
        line = Text("final   ", style="bold green" if result.ok else "bold red")
    else:
        line = Text("partial ", style="dim")
    line.append(f"q={shown(result.query_id)} {result.stage} ", style="cyan")
    if not result.final:
        line.append(f"[{'.'.join(str(i) for i in a.index)}] ", style="dim")
    if result.rerun:
        line.append("(re-run, replaces the one above) ", style="yellow")
    line.append(f"{result.latency:.3f}s ")
    if result.ok:
        line.append(preview(result.value, 200))
    else:
        line.append(f"{a.kind.value} {shown(a.reason or '')}", style=kind_style(a.kind.value))
    return line


async def follow_results(
    client: Client,
    query_ids: Sequence[str],
    *,
    since: float,
    limit: float,
    partials: bool,
    as_json: bool,
    pushed_at: float | None = None,
    hint: str | None = None,
    partials_from: Sequence[str] = (),
    why_late: Callable[[], Awaitable[str | None]] | None = None,
) -> None:
    """Print the results of ``query_ids`` as they come; exit 1 if some miss ``limit`` seconds.

    More than one query shows a progress bar (on stderr) of finished queries.
    ``pushed_at`` (epoch seconds) is when their push began, which the closing
    line counts from (by default: now); ``hint`` is the fix a time-out names
    (by default: a longer time-out, or the workers); ``why_late``, asked on a
    time-out, may say what happened instead (a failure it found).
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
    started = time.time() if pushed_at is None else pushed_at
    finished = 0
    try:
        results = client.follow(
            query_ids,
            timeout=limit,
            since=since,
            partials=partials,
            partials_from=partials_from,
            pushed_at=pushed_at,
        )
        async for result in results:
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
        fix = hint or "a longer --timeout, or check the workers (alto-stream up)"
        found = await why_late() if why_late is not None else None
        fail(f"{exc}{'; ' + found if found else ''}; fix: {fix}", 1)
    if progress is not None:
        progress.stop()
    if not as_json:
        err.print(
            f"{finished} of {len(query_ids)} queries finished {time.time() - started:.2f}s "
            "after the push"
        )
