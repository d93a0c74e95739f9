"""The sentence-transformers backend (the reference): torch, CUDA when present."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alto_stream.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["SentenceTransformerEncoder"]


def _quiet_transformers() -> None:
    """No progress bar on stderr while the weights load (a worker's log is one line per event)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - sentence-transformers depends on transformers
        return
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call,unused-ignore]


class SentenceTransformerEncoder:
    """A SentenceTransformer model loaded from a local directory (never from a hub)."""

    def __init__(self, path: Path, device: str | None) -> None:
        # Offline for good: a missing file must fail here, not start a download.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        # OpenMP threads that wait by spinning lose their core to every other process on a
        # busy machine (a broker, other workers): measured here at batch 1 on 2 shared cores,
        # 3 sentences/s spinning against 18 waiting passively. Set before torch loads OpenMP;
        # OMP_WAIT_POLICY=ACTIVE in the environment keeps spinning.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ConfigError(
                f"the sentence-transformers backend needs torch and sentence-transformers ({exc}); "
                "fix: pip install 'alto-stream[ml]'"
            ) from exc
        _quiet_transformers()
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self._model: Any = SentenceTransformer(
                str(path), device=self.device, local_files_only=True
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot load a sentence-transformers model from {path}: {exc}"
            ) from exc
        dimension = self._model.get_embedding_dimension()
        if dimension is None:
            raise ConfigError(f"the model in {path} does not say its embedding dimension")
        self.dimension = int(dimension)
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], batch_size: int) -> NDArray[np.float32]:
        """Normalised float32 rows, one per text."""
        import numpy as np

        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)
