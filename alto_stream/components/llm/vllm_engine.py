"""The ``vllm`` backend: vLLM's ``AsyncLLM`` engine in this process, on a CUDA GPU.

The engine runs with priority scheduling; each request is named after the
record it serves (the record id plus a sequence number), carries the query's
arrival time as its priority (lower first, so the oldest query's calls go
first) and streams delta outputs. When its record is abandoned (a revocation,
the worker stopping, a timeout: the reading task is cancelled, or the stream is
closed), the request is aborted so its GPU slot frees at once.

vLLM is imported only when this backend starts. On a machine without vLLM or
without a CUDA GPU the worker fails at start with one clear line
(:class:`LLMUnavailableError`), not an import trace.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from alto_stream.components.llm.base import (
    LLM,
    LLMError,
    LLMUnavailableError,
    Message,
    Prompt,
    Request,
    Sampling,
    chat_sampling,
    render_chat,
)

__all__ = ["VllmLLM"]


def _cuda_available() -> bool:
    """Whether torch sees a CUDA GPU (vLLM's own dependency)."""
    if importlib.util.find_spec("torch") is None:
        return False
    torch = importlib.import_module("torch")
    return bool(torch.cuda.is_available())


class VllmLLM(LLM):
    """A model served by vLLM's AsyncLLM inside the worker process."""

    backend = "vllm"

    def __init__(
        self,
        model: str | None,
        *,
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.85,
        sampling: Sampling | None = None,
    ) -> None:
        super().__init__(sampling=sampling)
        self.model = model
        self.max_model_len = max_model_len
        self.gpu_memory_utilization = gpu_memory_utilization
        self._engine: Any = None
        self._vllm: Any = None

    @property
    def model_label(self) -> str:
        """The model name or path."""
        return self.model or "(no model)"

    async def check(self) -> None:
        """A model is named, vLLM is installed and a CUDA GPU is present (one clear error)."""
        if not self.model:
            raise LLMUnavailableError(
                "the vllm backend needs a model: set ALTO_LLM_MODEL (a Hugging Face name or "
                "a local path) or pass model="
            )
        if importlib.util.find_spec("vllm") is None:
            raise LLMUnavailableError(
                "the vllm backend needs vLLM (`pip install 'alto-stream[vllm]'`) on a CUDA GPU "
                "host; on this machine use ALTO_LLM_BACKEND=llama_cpp, or ALTO_LLM_BACKEND=openai "
                "with ALTO_LLM_URL pointing at a `vllm serve`"
            )
        if not _cuda_available():
            raise LLMUnavailableError(
                "the vllm backend needs a CUDA GPU and none is visible here: use "
                "ALTO_LLM_BACKEND=llama_cpp, or ALTO_LLM_BACKEND=openai with ALTO_LLM_URL "
                "pointing at a `vllm serve` on a GPU host"
            )

    async def _load(self) -> None:
        vllm = importlib.import_module("vllm")
        async_llm = importlib.import_module("vllm.v1.engine.async_llm")
        arg_utils = importlib.import_module("vllm.engine.arg_utils")
        args = arg_utils.AsyncEngineArgs(
            model=self.model,
            max_model_len=self.max_model_len,
            gpu_memory_utilization=self.gpu_memory_utilization,
            scheduling_policy="priority",
        )
        self._engine = async_llm.AsyncLLM.from_engine_args(args)
        self._vllm = vllm

    async def _release(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.shutdown()

    def params(self, sampling: Sampling) -> Any:
        """vLLM's SamplingParams for ``sampling``, streaming deltas."""
        kind = importlib.import_module("vllm.sampling_params").RequestOutputKind
        options: dict[str, Any] = {
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": sampling.seed,
            "stop": list(sampling.stop) or None,
            "repetition_penalty": 1.0,  # none: the same as the other backends (its default)
            "output_kind": kind.DELTA,
        }
        if sampling.top_k is not None:
            options["top_k"] = sampling.top_k
        return self._vllm.SamplingParams(**options)

    async def _generate(
        self, prompt: Prompt, sampling: Sampling, request: Request
    ) -> AsyncGenerator[str, None]:
        engine = self._engine
        if engine is None:
            raise LLMError("the vllm engine was closed")
        text = prompt if isinstance(prompt, str) else await self._chat_prompt(prompt)
        if not isinstance(prompt, str) and text == render_chat(prompt):  # no chat template
            sampling = chat_sampling(sampling)
        finished = False
        try:
            async for output in engine.generate(
                text,
                self.params(sampling),
                request.request_id,
                priority=request.priority or 0,
            ):
                for completion in output.outputs:
                    if completion.text:
                        yield completion.text
                finished = bool(output.finished)
        finally:
            if not finished:  # abandoned: free the request's slot now
                await engine.abort(request.request_id)

    async def _chat_prompt(self, messages: Sequence[Message]) -> str:
        """The model's chat template applied to ``messages`` (plain rendering without one)."""
        tokenizer = await self._engine.get_tokenizer()
        if getattr(tokenizer, "chat_template", None):
            return str(
                tokenizer.apply_chat_template(
                    [dict(m) for m in messages], tokenize=False, add_generation_prompt=True
                )
            )
        return render_chat(messages)
