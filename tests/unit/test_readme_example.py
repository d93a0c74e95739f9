"""The README's "Writing an app" example runs as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from alto_stream.runner import run_in_memory

pytestmark = pytest.mark.timeout(60)

README = Path(__file__).resolve().parents[2] / "README.md"


async def test_the_writing_an_app_example_runs() -> None:
    section = README.read_text().split("## Writing an app", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    scope: dict[str, Any] = {}
    exec(compile(code.group(1), str(README), "exec"), scope)
    results = await run_in_memory(scope["app"], [{"text": "a\n\nb"}])
    assert [r.value for r in results] == [{"text": "A\n\nB"}]
