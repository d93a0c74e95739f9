"""docs/cli.md "From Python": every name it lists imports from the module it names.

Found by a new user: the doc said everything lives in ``alto_stream.ops``
(``load_app(ref)``, ``check_broker``, ..., ``Supervisor``), but
``from alto_stream.ops import load_app`` failed: they live in its modules.
The list is read from the doc, so the doc and the test cannot drift apart.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def _listed() -> list[tuple[str, str]]:
    """(module, name) for each name in the section's ``- `module`: `name(...)`...`` lines."""
    section = DOC.read_text().split("## From Python", 1)[1].split("\n## ", 1)[0]
    pairs = []
    for module, rest in re.findall(r"^- `([\w.]+)`: (.*)$", section, re.MULTILINE):
        for span in re.findall(r"`([^`]+)`", rest):
            names = re.findall(r"([A-Za-z_]\w*)\(", span) or [span]
            pairs += [(module, name) for name in names]
    return pairs


def test_every_name_the_doc_lists_imports_from_the_module_it_names() -> None:
    pairs = _listed()
    names = {name for _, name in pairs}
    assert {"load_app", "check_broker", "Supervisor", "MemoryTransport"} <= names, pairs
    assert len(pairs) >= 15, pairs  # the list was read, not skipped
    missing = [
        f"{module}.{name}"
        for module, name in pairs
        if not hasattr(importlib.import_module(module), name)
    ]
    assert missing == []
