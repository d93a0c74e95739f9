"""push names a query too large with its headers as the command's input does (FILE:LINE).

A new user's round: a line just under the limit passed the value's check, then
the client's, which counts the headers too, refused it as "query 3 of 3 is
1,000,086 bytes" (or "the query is ...") with no file or line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from alto_stream import App
from alto_stream.cli.push_cmd import _push
from alto_stream.client import Client
from alto_stream.codec import Codec
from alto_stream.errors import ConfigError
from alto_stream.ops.queries import read_labelled_queries
from alto_stream.runtime.memory import MemoryTransport

pytestmark = pytest.mark.timeout(30)


async def test_a_line_too_large_with_its_headers_is_named_by_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALTO_MAX_RECORD_BYTES", "2000")
    app = App("pushlabels", input_schema="alto.Text")

    @app.map(source=app.input, schema="alto.Text")
    async def same(doc: dict[str, str]) -> dict[str, str]:
        return doc

    file = tmp_path / "queries.jsonl"
    file.write_text('{"text": "a"}\n\n{"text": "' + "x" * 1_985 + '"}\n')
    labelled = read_labelled_queries([], None, file, "alto.Text", Codec())
    assert [label for label, _ in labelled] == [f"{file}:1", f"{file}:3"]
    async with Client(app, MemoryTransport(1)) as client:
        with pytest.raises(ConfigError) as raised:
            await _push(client, labelled)
        assert str(raised.value).startswith(f"{file}:3 is 2,1"), raised.value
        with pytest.raises(ConfigError, match=r"^text 1 is 2,1"):
            await _push(client, [("text 1", {"text": "y" * 1_985})])
