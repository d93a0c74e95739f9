"""``alto-stream graph APP``: draw an app's topology: stages, topics, split/aggregate levels."""

from __future__ import annotations

from typing import Annotated

import typer

from alto_stream.cli._opsutil import handled

__all__ = ["graph", "register"]


def graph(
    app_ref: Annotated[str, typer.Argument(metavar="APP", help="The app, as module:attribute.")],
    fmt: Annotated[
        str,
        typer.Option("--format", "-f", help="text, mermaid (Markdown) or dot (Graphviz)."),
    ] = "text",
) -> None:
    """Draw APP's topology: every stage, the topic it reads, the level it splits or closes.

    Loads the app only (no Kafka, no model): `alto-stream graph workers.rag:app
    --format mermaid` prints a diagram for a Markdown page.
    """
    from alto_stream.ops.graph import render
    from alto_stream.ops.loading import load_topology

    with handled():
        _, topology = load_topology(app_ref)
        drawing = render(topology, fmt)
    typer.echo(drawing)


def register(root: typer.Typer) -> None:
    """Add ``graph`` as a top-level command."""
    root.command(name="graph")(graph)
