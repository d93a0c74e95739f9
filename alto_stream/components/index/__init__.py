"""Vector retrieval: build an index of a corpus, search it by exact cosine top-k.

::

    corpus = load_corpus("wiki")                      # or a JSON-lines file
    build_index(corpus, "idx/", embedder=Embedder())  # vectors, passages, manifest
    retriever = Retriever("idx/")                     # loads nothing yet

    @app.map(source=app.input, schema="alto.Passages")
    async def retrieve(query):
        found = await retriever.asearch(query["text"], k=5)
        return {"query": query["text"], "passages": [...]}

An index refuses queries from another model than the one it was built with
(:class:`ModelMismatchError`) and a corpus that changed since the build
(:class:`StaleIndexError`), with the command that fixes it.
"""

from alto_stream.components.index.build import DEFAULT_PASSAGE_WORDS, build_index, up_to_date
from alto_stream.components.index.corpus import WIKI, Corpus, Document, chunk_text, load_corpus
from alto_stream.components.index.errors import (
    IndexRefusedError,
    ModelMismatchError,
    StaleIndexError,
)
from alto_stream.components.index.retriever import Retriever
from alto_stream.components.index.store import (
    Index,
    Manifest,
    Passage,
    default_index_dir,
    index_path,
    open_index,
)

__all__ = [
    "DEFAULT_PASSAGE_WORDS",
    "WIKI",
    "Corpus",
    "Document",
    "Index",
    "IndexRefusedError",
    "Manifest",
    "ModelMismatchError",
    "Passage",
    "Retriever",
    "StaleIndexError",
    "build_index",
    "chunk_text",
    "default_index_dir",
    "index_path",
    "load_corpus",
    "open_index",
    "up_to_date",
]
