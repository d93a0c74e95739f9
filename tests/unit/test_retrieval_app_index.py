"""workers.retrieval reads ALTO_INDEX_DIR, as the other apps do (it ignored it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alto_stream.runner import run_in_memory
from workers import retrieval


async def test_the_retrieval_app_uses_the_configured_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "my-index"
    monkeypatch.setenv("ALTO_INDEX_DIR", str(missing))
    (result,) = await run_in_memory(retrieval.build("retr-env"), [{"text": "who?"}], timeout=60)
    assert not result.ok
    assert str(missing) in (result.reason or "")
