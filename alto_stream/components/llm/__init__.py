"""LLM generation with one interface and three backends (llama_cpp, openai, vllm).

::

    from alto_stream.components.llm import Sampling, shared_llm
    from alto_stream.components.sentences import split_sentences

    llm = shared_llm(stages=["answer"], preload=True)  # from ALTO_LLM_*; loads nothing yet


    @app.split(source=app.input, schema="alto.Text", max_in_flight=4)
    async def answer(query):
        async for sentence in split_sentences(llm.stream(prompt(query["text"]))):
            yield {"text": sentence}

Backends are imported only when chosen, and their libraries only when a model
loads. See docs/components.md.
"""

from __future__ import annotations

from alto_stream.components.llm.base import (
    LLM,
    LLMError,
    LLMUnavailableError,
    Message,
    Prompt,
    Request,
    Sampling,
    render_chat,
)
from alto_stream.components.llm.config import BACKENDS, LLMConfig, create_llm, shared_llm

__all__ = [
    "BACKENDS",
    "LLM",
    "LLMConfig",
    "LLMError",
    "LLMUnavailableError",
    "Message",
    "Prompt",
    "Request",
    "Sampling",
    "create_llm",
    "render_chat",
    "shared_llm",
]
