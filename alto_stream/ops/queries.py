"""Queries for ``push``: read from text, JSON or a JSON-lines file, checked against the schema.

>>> from alto_stream.codec import Codec
>>> read_queries(["hello"], None, None, "alto.Text", Codec())
[{'text': 'hello'}]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alto_stream.codec import Codec
from alto_stream.errors import ConfigError, SchemaError

__all__ = ["read_queries"]


def read_queries(
    texts: Sequence[str],
    value: str | None,
    file: Path | None,
    schema: str,
    codec: Codec,
) -> list[dict[str, Any]]:
    """The queries to push: each text as ``{"text": ...}``, ``value`` (a JSON object) and
    every line of ``file`` (``-``: stdin), each a JSON object fitting ``schema``.

    :class:`ConfigError` naming the culprit when one is not an object or does not fit.
    """
    queries: list[tuple[str, dict[str, Any]]] = [
        (f"text {i + 1}", {"text": text}) for i, text in enumerate(texts)
    ]
    if value is not None:
        queries.append(("--value", _object(value, "--value")))
    if file is not None:
        lines = sys.stdin.read() if str(file) == "-" else _read(file)
        for number, line in enumerate(lines.splitlines(), 1):
            if line.strip():
                where = f"{file}:{number}"
                queries.append((where, _object(line, where)))
    if not queries:
        raise ConfigError("no query given: expected TEXT, --value JSON or --file queries.jsonl")
    for where, query in queries:
        try:
            codec.encode(schema, query)
        except SchemaError as exc:
            raise ConfigError(f"{where} does not fit the app's input schema: {exc}") from exc
    return [query for _, query in queries]


def _read(file: Path) -> str:
    try:
        return file.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read queries from {file}: {exc}") from exc


def _object(text: str, where: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{where} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    return data
