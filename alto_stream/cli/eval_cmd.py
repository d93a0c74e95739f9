"""``alto-stream eval fanout``: push a labelled set through the running app and score it."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from alto_stream.cli._opsutil import Bootstrap, JsonFlag, connect, emit_json, err, handled, out

if TYPE_CHECKING:
    from alto_stream.client import Result
    from alto_stream.ops.evaluate import EvalQuestion, Outcome
    from alto_stream.runtime.kafka import KafkaTransport

__all__ = ["app"]

app = typer.Typer(help="Evaluate a running app on a labelled data set.", no_args_is_help=True)


@app.command()
def fanout(
    split: Annotated[str, typer.Option(help="FanOutQA split (dev: the one with answers).")] = "dev",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N questions.")] = None,
    decomposition: Annotated[
        str, typer.Option(help="llm (the app decomposes) or dataset (FanOutQA's sub-questions).")
    ] = "llm",
    app_ref: Annotated[
        str, typer.Option("--app", "-a", help="The running app, as module:attribute.")
    ] = "workers.fanout:app",
    timeout: Annotated[
        float, typer.Option(min=1.0, help="Seconds to wait for all the results.")
    ] = 600.0,
    bootstrap: Bootstrap = None,
    as_json: JsonFlag = False,
) -> None:
    """Push FanOutQA questions through the running fanout app; report recall, accuracy, latency.

    The app's workers must be running (`alto-stream up workers.fanout:app`).
    Recall is the share of each question's gold Wikipedia pages among the
    titles the app retrieved; accuracy is FanOutQA's loose accuracy (the
    share of the reference answer's strings found in the normalised answer);
    latency is push to final result. Questions not done within --timeout
    count as not completed.
    """
    from alto_stream.ops.evaluate import fanoutqa_questions, summarise
    from alto_stream.ops.loading import load_topology

    if decomposition not in ("llm", "dataset"):
        raise typer.BadParameter("choose llm or dataset", param_hint="--decomposition")
    with handled():
        _, topology = load_topology(app_ref)
        questions = fanoutqa_questions(split, limit=limit)
        transport = connect(bootstrap)
        outcomes = asyncio.run(
            _run(topology, transport, questions, decomposition == "dataset", timeout)
        )
    summary = summarise(outcomes, split=split, decomposition=decomposition)
    if as_json:
        emit_json(summary.to_dict())
        return
    table = Table(title=f"FanOutQA {split}: {app_ref}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in summary.to_dict().items():
        table.add_row(key, "-" if value is None else str(value))
    out.print(table)


async def _run(
    topology: Any,
    transport: KafkaTransport,
    questions: list[EvalQuestion],
    dataset: bool,
    timeout: float,
) -> list[Outcome]:
    from alto_stream.client import Client
    from alto_stream.ops.evaluate import Outcome

    results: dict[str, Result] = {}
    progress = Progress(
        TextColumn("eval"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    async with Client(topology, transport) as client:
        since = time.time() - 1.0
        ids = await client.push_many([q.query(dataset_decomposition=dataset) for q in questions])
        with progress:
            task = progress.add_task("questions", total=len(ids))
            try:
                async for result in client.follow(
                    ids, timeout=timeout, since=since, partials=False
                ):
                    results[result.query_id] = result
                    progress.advance(task)
            except TimeoutError as exc:
                err.print(f"eval: {exc}", markup=False)
    outcomes = []
    for query_id, question in zip(ids, questions, strict=True):
        if query_id not in results:
            outcomes.append(Outcome(question))
            continue
        result = results[query_id]
        report = json.loads(result.value["json"]) if result.ok and result.value else {}
        error = report.get("error") if result.ok else result.envelope.ancestry.reason
        outcomes.append(
            Outcome(
                question,
                answer=report.get("answer"),
                titles=tuple(report.get("titles", ())),
                latency=result.latency,
                error=error or None,
            )
        )
    return outcomes
