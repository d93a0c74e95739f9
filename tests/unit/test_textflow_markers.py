"""textflow's finals say where a part failed (a sentence past max_children), in memory.

Before 2026-12-03 its aggregates kept only ``c.ok`` children: the failed sentence
was left out without a word, and the final read as whole.
"""

from __future__ import annotations

from alto_stream import Client
from alto_stream.runner import LocalRun, run_in_memory
from alto_stream.runtime.memory import MemoryTransport
from alto_stream.runtime.worker import WorkerOptions
from workers import textflow


async def test_a_failed_sentence_shows_in_the_final() -> None:
    app = textflow.build("textflow_markers")
    transport = MemoryTransport(2)
    options = WorkerOptions(max_children=5)
    doc = "a b c. d e f g h i j k. l m."  # the second sentence has 8 words: past the limit
    async with LocalRun(app, transport, options=options), Client(app, transport) as client:
        (query,) = await client.push_many([{"text": doc}])
        (result,) = [r async for r in client.follow([query], timeout=10, partials=False)]
    text = result.value["text"]
    assert text.startswith("A B C. [error: "), text
    assert "past the limit of 5" in text
    assert text.endswith("] L M.")
    assert result.ok


async def test_skipped_words_leave_nothing() -> None:
    (result,) = await run_in_memory(textflow.build("textflow_skips"), [{"text": "skip a. skip."}])
    assert result.value == {"text": textflow.reference("skip a. skip.")} == {"text": "A. "}
