"""An embedding app: texts in, one normalised all-MiniLM-L6-v2 vector per text out.

One batch stage, ``embed``: the worker gathers up to ``size`` records (waiting at
most ``wait`` seconds for a batch to fill) and embeds them in one model call, in a
thread, so that the worker's heartbeats and fetches go on meanwhile. The model
loads in the worker process as it starts (a missing one stops it there, exit
status 2); loading this module (for ``push``, ``topics``, ``tail``...) imports
neither torch nor numpy.

Run it: ``alto-stream worker workers.embedding:app embed`` then
``alto-stream push workers.embedding:app "A sentence to embed." --follow``; other
settings through the factory, e.g. ``"workers.embedding:build('emb', size=8)"``.
"""

from __future__ import annotations

from typing import Any

from alto_stream import App, resources
from alto_stream.components.embed import Backend, Embedder

__all__ = ["app", "build"]


def build(
    name: str = "embedding",
    *,
    size: int = 32,
    wait: float = 0.02,
    model: str | None = None,
    backend: Backend = "sentence-transformers",
) -> App:
    """``input (alto.Text) -> embed (alto.Embedding)``, ``size`` texts per model call at most."""
    app = App(name, input_schema="alto.Text")
    embedder = Embedder(model, backend=backend, batch_size=size)
    # Loaded as the worker starts: a model that is not installed stops it there, with
    # the fix, as the other apps' models do (before 2026-12-03 it started and sent
    # every query to the dead letters).
    resources.preload(embedder.aload, stages=["embed"], app=name)

    @app.batch(source=app.input, schema="alto.Embedding", size=size, wait=wait)
    async def embed(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
        vectors = await embedder.aembed([v["text"] for v in values])
        return [
            {"text": v["text"], "vector": vector.tolist(), "model": embedder.name}
            for v, vector in zip(values, vectors, strict=True)
        ]

    return app


app = build()
