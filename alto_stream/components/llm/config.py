"""Choosing a backend: app code, the environment, or a worker's ``--llm`` option.

The environment (what ``--llm`` on ``worker``/``up`` sets for its processes)::

    ALTO_LLM_BACKEND   llama_cpp (default) | openai | vllm
    ALTO_LLM_MODEL     a GGUF path (llama_cpp; default: the packaged Gemma 3 270M),
                       a model name (openai) or a Hugging Face name or path (vllm)
    ALTO_LLM_URL       the server's base URL, e.g. http://127.0.0.1:8000/v1 (openai)
    ALTO_LLM_PRIORITY  1: always send vLLM's ``priority`` field (openai), 0: never;
                       unset: when the app asks (``App(priority=True)``)
    ALTO_LLM_REQUEST_IDS  1: send each request's id as ``X-Request-Id`` (openai)
    ALTO_LLM_THREADS   llama.cpp's CPU threads
    ALTO_LLM_SEED      the seed of every call that sets none: the same prompt, the same text
    ALTO_LLM_TIMEOUT   seconds a request may wait for the server's next byte (openai;
                       default 60; behind ``alto-stream gate`` it counts the wait there)
    ALTO_LLM_API_KEY   the API key (openai; the variable's name is configurable)

An app module creates its model with :func:`shared_llm`; that loads nothing (so
``push``, ``topics``, ``trace`` or ``tail`` load no model), and every stage of the
process that asks for the same configuration shares one instance. What a backend
needs and lacks (the openai backend's URL, the vllm backend's model) is refused
when the model starts, by a worker's check at start or by the first call
(:class:`LLMUnavailableError`), never when a command merely loads the app.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, cast, get_args

from alto_stream import resources
from alto_stream.components.llm.base import LLM, Sampling
from alto_stream.errors import ConfigError

__all__ = ["BACKENDS", "Backend", "LLMConfig", "create_llm", "shared_llm"]

Backend = Literal["llama_cpp", "openai", "vllm"]
BACKENDS: tuple[str, ...] = get_args(Backend)


@dataclass(frozen=True)
class LLMConfig:
    """Which backend and model, and how to reach or run it (durations in seconds)."""

    backend: Backend = "llama_cpp"
    model: str | None = None
    url: str | None = None
    api_key_env: str = "ALTO_LLM_API_KEY"
    priority: bool | None = None
    """Send the query's priority (openai): always, never, or None: when the app asks."""
    request_ids: bool = False
    threads: int | None = None
    seed: int | None = None
    """The seed of every call whose sampling sets none (repeatable answers)."""
    n_ctx: int = 2048
    timeout: float = 60.0
    retries: int = 4
    max_connections: int = 64
    gpu_memory_utilization: float = 0.85

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(
                f"unknown LLM backend {self.backend!r}: choose one of {', '.join(BACKENDS)}"
            )
        # A missing URL (openai) or model (vllm) is refused when the model first starts
        # (a worker's check at start, or the first call), not here: this runs when a
        # command merely loads the app (`push` with ALTO_LLM_BACKEND=vllm exported).

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> LLMConfig:
        """The configuration from ``ALTO_LLM_*`` variables, then ``overrides`` (app code wins)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if backend := env.get("ALTO_LLM_BACKEND"):
            values["backend"] = backend.strip().lower().replace("-", "_")
        for name, key in (("model", "ALTO_LLM_MODEL"), ("url", "ALTO_LLM_URL")):
            if env.get(key):
                values[name] = env[key]
        flags = (("priority", "ALTO_LLM_PRIORITY"), ("request_ids", "ALTO_LLM_REQUEST_IDS"))
        for name, key in flags:
            if env.get(key):
                values[name] = env[key].lower() in ("1", "true", "yes")
        for name, key in (("threads", "ALTO_LLM_THREADS"), ("seed", "ALTO_LLM_SEED")):
            if number := env.get(key):
                if not number.isdigit():
                    raise ConfigError(f"{key} must be a number, got {number!r}")
                values[name] = int(number)
        if timeout := env.get("ALTO_LLM_TIMEOUT"):
            values["timeout"] = _seconds("ALTO_LLM_TIMEOUT", timeout)
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown LLM settings: {', '.join(sorted(unknown))}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _seconds(key: str, text: str) -> float:
    """``text`` as a positive number of seconds (:class:`ConfigError` naming ``key``)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"{key} must be a positive number of seconds, got {text!r}")
    return seconds


def create_llm(config: LLMConfig, *, sampling: Sampling | None = None) -> LLM:
    """A new, unloaded model of ``config``'s backend (imports no heavy library)."""
    llm = _backend(config, sampling)
    llm.seed = config.seed
    return llm


def _backend(config: LLMConfig, sampling: Sampling | None) -> LLM:
    if config.backend == "llama_cpp":
        from alto_stream.components.llm.llama_cpp import LlamaCppLLM

        return LlamaCppLLM(
            config.model, n_ctx=config.n_ctx, threads=config.threads, sampling=sampling
        )
    if config.backend == "openai":
        from alto_stream.components.llm.openai_http import OpenAILLM

        return OpenAILLM(
            config.url,
            config.model,
            api_key_env=config.api_key_env,
            priority=config.priority,
            request_ids=config.request_ids,
            timeout=config.timeout,
            retries=config.retries,
            max_connections=config.max_connections,
            sampling=sampling,
        )
    from alto_stream.components.llm.vllm_engine import VllmLLM

    return VllmLLM(
        config.model,
        gpu_memory_utilization=config.gpu_memory_utilization,
        sampling=sampling,
    )


_SHARED: dict[tuple[LLMConfig, Sampling | None], LLM] = {}


def shared_llm(
    config: LLMConfig | None = None,
    *,
    sampling: Sampling | None = None,
    stages: Iterable[str] | None = None,
    preload: bool = False,
    app: str | None = None,
) -> LLM:
    """This process's model for ``config`` (default: :meth:`LLMConfig.from_env`), unloaded.

    It loads on first use, or when a worker of one of ``stages`` starts if
    ``preload``; a worker of those stages also checks at start that the backend
    can run (a missing GPU or package is one clear error before any record),
    and closes the model when it stops; with ``app``, only that app's workers.
    Calls with an equal configuration share one instance.
    """
    config = config or LLMConfig.from_env()
    key = (config, sampling)
    llm = _SHARED.get(key)
    if llm is None:
        llm = _SHARED[key] = create_llm(config, sampling=sampling)
    resources.register(llm, stages=stages, preload=preload, app=app)
    return llm


def with_backend(config: LLMConfig, backend: str) -> LLMConfig:
    """``config`` with another backend (what ``--llm`` does)."""
    return replace(config, backend=cast(Backend, backend))
