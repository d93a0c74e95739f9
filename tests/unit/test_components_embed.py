"""The embedder's configuration and laziness, without loading a model.

The real model's tests are in tests/e2e/test_embeddings_e2e.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from alto_stream.components.embed import DEFAULT_MODEL, Embedder, resolve_model
from alto_stream.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "numpy", "sentence_transformers", "transformers", "onnxruntime", "tokenizers")


def modules_after(code: str) -> list[str]:
    """The heavy modules imported by a fresh interpreter that ran ``code``."""
    probe = (
        f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_loading_the_apps_and_the_cli_imports_no_model_library() -> None:
    code = (
        "import alto_stream.cli\n"
        "from alto_stream.ops.loading import load_app\n"
        "for ref in ('workers.embedding:app', \"workers.embedding:build('e', size=8)\",\n"
        "            'workers.retrieval:app', \"workers.retrieval:build('r', index='/no')\"):\n"
        "    load_app(ref).topology()\n"
        "from alto_stream.components.embed import Embedder\n"
        "from alto_stream.components.index import Retriever\n"
        "Embedder(); Embedder('/some/dir', backend='onnx'); Retriever('/nowhere')\n"
    )
    assert modules_after(code) == []


def test_an_embedder_knows_its_name_without_loading() -> None:
    assert Embedder().name == DEFAULT_MODEL
    assert Embedder(DEFAULT_MODEL, backend="onnx").name == DEFAULT_MODEL
    assert Embedder("/models/../models/mini").name == "/models/mini"
    assert not Embedder().loaded
    assert "loaded=False" in repr(Embedder())


def test_bad_settings_are_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown embedding backend 'tf'"):
        Embedder(backend="tf")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="at least 1"):
        Embedder(batch_size=0)
    with pytest.raises(ConfigError, match="never downloaded"):
        resolve_model(str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match="never downloaded"):
        Embedder("sentence-transformers/all-mpnet-base-v2").embed(["x"])
    with pytest.raises(ConfigError, match="wrap it in a list"):
        Embedder().embed("one string")


def test_a_missing_model_directory_is_named_as_the_embedder_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    embedder = Embedder("no-such-model-xyz")
    assert embedder.name == str(tmp_path.resolve() / "no-such-model-xyz")
    with pytest.raises(ConfigError) as refused:
        embedder.embed(["x"])
    assert "'no-such-model-xyz'" in str(refused.value)
    assert f"no directory {embedder.name})" in str(refused.value)


def test_a_local_model_directory_resolves_to_its_absolute_path(tmp_path: Path) -> None:
    ref = resolve_model(tmp_path, backend="onnx")
    assert (ref.name, ref.path, ref.backend) == (
        str(tmp_path.resolve()),
        tmp_path.resolve(),
        "onnx",
    )


async def test_the_embedding_apps_worker_loads_its_model_as_it_starts(tmp_path: Path) -> None:
    # A new user without the ml extra: the worker started, and every query went to the
    # dead letters; the other apps' workers stop at start with the fix (exit status 2).
    from alto_stream import resources
    from workers.embedding import build

    app = build("embedding_preload", model=str(tmp_path / "no-model"))
    with pytest.raises(ConfigError, match="no directory"):
        await resources.start_for("embed", app.name)
