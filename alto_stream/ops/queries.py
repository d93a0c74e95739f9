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

from alto_stream.avro_check import field_misfits, type_name
from alto_stream.codec import Codec
from alto_stream.errors import ConfigError, SchemaError
from alto_stream.query_checks import check_size, check_text, max_record_bytes_from_env

__all__ = ["read_queries"]


def read_queries(
    texts: Sequence[str],
    value: str | None,
    file: Path | None,
    schema: str,
    codec: Codec,
    *,
    max_bytes: int | None = None,
) -> list[dict[str, Any]]:
    """The queries to push: each text as ``{"text": ...}``, ``value`` (a JSON object) and
    every line of ``file`` (``-``: stdin), each a JSON object fitting ``schema``.

    :class:`ConfigError` naming the culprit when one is not an object, does not fit,
    holds text that is not UTF-8, or is larger than ``max_bytes`` encoded (default:
    ``ALTO_MAX_RECORD_BYTES``, else 1,000,000; checked
    before anything is sent, by :mod:`alto_stream.query_checks`, as the client does).
    """
    queries: list[tuple[str, dict[str, Any]]] = [
        (f"text {i + 1}", {"text": text}) for i, text in enumerate(texts)
    ]
    if value is not None:
        queries.append(("--value", _object(value, "--value")))
    if file is not None:
        lines = _decode(sys.stdin.buffer.read() if str(file) == "-" else _read(file), file)
        for number, line in enumerate(lines.splitlines(), 1):
            if line.strip():
                where = f"{file}:{number}"
                queries.append((where, _object(line, where)))
    if not queries:
        if file is not None:
            raise ConfigError(
                f"{file} holds no query (no line but empty ones): expected JSON lines"
            )
        raise ConfigError("no query given: expected TEXT, --value JSON or --file queries.jsonl")
    record = codec.registry.get(schema).raw
    for where, query in queries:
        misfits = field_misfits(record, query)
        if misfits:
            fields = _field_list(record)
            fix = f"give {fields}" if "missing" in misfits else f"drop it ({schema} has {fields})"
            raise ConfigError(
                f"{where} does not fit the app's input schema {schema}: {misfits}; fix: {fix}"
            )
        check_text(query, where)
        try:
            size = len(codec.encode(schema, query))
        except SchemaError as exc:
            raise ConfigError(f"{where} does not fit the app's input schema: {exc}") from exc
        check_size(size, where, max_bytes or max_record_bytes_from_env())
    return [query for _, query in queries]


def _field_list(record_schema: dict[str, Any]) -> str:
    parts = []
    for f in record_schema.get("fields", []):
        optional = ", optional" if "default" in f else ""
        parts.append(f"{f['name']} ({type_name(f['type'])}{optional})")
    return "the fields " + ", ".join(parts) if len(parts) > 1 else "the field " + parts[0]


def _read(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read queries from {file}: {exc}") from exc


def _decode(data: bytes, file: Path) -> str:
    """JSON lines are UTF-8 (whatever the locale): name the line that is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{file}:{line} is not UTF-8 (byte {data[exc.start]:#04x}): fix: save the file as UTF-8"
        ) from exc


def _object(text: str, where: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{where} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    return data
