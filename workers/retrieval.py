"""A retrieval app: a query in, its best passages of a vector index out.

One batch stage, ``retrieve``: queries that arrive together are embedded in one
model call, then each is matched against every passage of the index (exact
cosine top-k over the memory-mapped vectors). The index opens and the model
loads in the worker process on the first batch, and the index is checked then:
a model or a corpus that no longer matches it is refused (the records go to the
dead-letter topic with the reason, their queries complete with an error marker).

Build the index first (``alto-stream index build``: the Wikipedia summaries by
default), then ``alto-stream worker workers.retrieval:app retrieve`` and
``alto-stream push workers.retrieval:app "Who directed 2001: A Space Odyssey?" --follow``.
"""

from __future__ import annotations

from typing import Any

from alto_stream import App
from alto_stream.components.index import Retriever
from workers.common import index_dir

__all__ = ["app", "build"]


def build(
    name: str = "retrieval",
    *,
    index: str | None = None,
    k: int = 5,
    size: int = 16,
    wait: float = 0.005,
) -> App:
    """``input (alto.Text) -> retrieve (alto.Passages)``.

    ``index`` defaults to ``ALTO_INDEX_DIR``, else the wiki index, as for the other
    apps (it ignored ``ALTO_INDEX_DIR``, which a new user had set for them all).
    """
    app = App(name, input_schema="alto.Text")
    retriever = Retriever(index or index_dir(), k=k)

    @app.batch(source=app.input, schema="alto.Passages", size=size, wait=wait)
    async def retrieve(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
        queries = [v["text"] for v in values]
        found = await retriever.asearch_many(queries)
        return [
            {
                "query": query,
                "passages": [
                    {"id": p.id, "title": p.title, "text": p.text, "score": p.score}
                    for p in passages
                ],
            }
            for query, passages in zip(queries, found, strict=True)
        ]

    return app


app = build()
