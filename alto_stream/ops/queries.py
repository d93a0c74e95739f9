"""Queries for ``push``: read from text, JSON or a JSON-lines file, checked against the schema.

JSON has no bytes: a ``bytes`` or ``fixed`` field is given as ``"base64:..."``,
the form ``--json`` writes them in (:func:`alto_stream.ops.records.jsonable`).

>>> from alto_stream.codec import Codec
>>> read_queries(["hello"], None, None, "alto.Text", Codec())
[{'text': 'hello'}]
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alto_stream.avro_check import field_misfits, named_types, type_name
from alto_stream.codec import Codec
from alto_stream.errors import ConfigError, SchemaError
from alto_stream.query_checks import (
    check_depth,
    check_size,
    check_text,
    max_record_bytes_from_env,
    too_deep,
)

__all__ = ["read_labelled_queries", "read_queries"]


def read_queries(
    texts: Sequence[str],
    value: str | None,
    file: Path | None,
    schema: str,
    codec: Codec,
    *,
    max_bytes: int | None = None,
) -> list[dict[str, Any]]:
    """:func:`read_labelled_queries` without the labels."""
    labelled = read_labelled_queries(texts, value, file, schema, codec, max_bytes=max_bytes)
    return [query for _, query in labelled]


def read_labelled_queries(
    texts: Sequence[str],
    value: str | None,
    file: Path | None,
    schema: str,
    codec: Codec,
    *,
    max_bytes: int | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """Each query to push with what names it in an error (``text 2``, ``FILE:LINE``).

    The queries to push: each text as ``{"text": ...}``, or ``value`` (a JSON object),
    or every line of ``file`` (``-``: stdin; UTF-8, a BOM at its start allowed), each a
    JSON object fitting ``schema``. One of the three: :class:`ConfigError` for several.

    :class:`ConfigError` naming the culprit when one is not an object, does not fit,
    holds text that is not UTF-8, nests objects and arrays more than 100 deep, or is
    larger than ``max_bytes`` encoded (default: ``ALTO_MAX_RECORD_BYTES``, else
    1,000,000; checked before anything is sent, by :mod:`alto_stream.query_checks`,
    as the client does).
    """
    _one_source(texts, value, file)
    queries: list[tuple[str, dict[str, Any]]] = [
        (f"text {i + 1}", {"text": text}) for i, text in enumerate(texts)
    ]
    if value is not None:
        queries.append(("--value", _object(value, "--value")))
    if file is not None:
        lines = _decode(sys.stdin.buffer.read() if str(file) == "-" else _read(file), file)
        for number, line in enumerate(_LINE_END.split(lines), 1):
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
    named = named_types(record)
    queries = [(where, _with_bytes(query, record, named, where, "")) for where, query in queries]
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
            hint = _BYTES_HINT if "expected bytes" in str(exc) else ""
            raise ConfigError(f"{where} does not fit the app's input schema: {exc}{hint}") from exc
        check_size(size, where, max_bytes or max_record_bytes_from_env())
    return queries


# Not str.splitlines(): a JSON string may hold U+0085, U+2028 and U+2029 as they are,
# which it takes for line ends too; "\r" and "\n" cannot be in a string unescaped.
_LINE_END = re.compile(r"\r\n?|\n")
_BASE64 = "base64:"
_BYTES_HINT = ' (in JSON, bytes are "base64:" + their base64, as --json prints them)'
_BYTES = frozenset({"bytes", "fixed"})


def _with_bytes(value: Any, schema: Any, named: dict[str, Any], where: str, path: str) -> Any:
    """``value`` with each ``"base64:..."`` string the schema has bytes for decoded to bytes.

    In a union that also takes a string, the text stays a string (it is one).
    """
    if isinstance(schema, str):
        schema = named.get(schema, schema)
    if isinstance(schema, list):
        branches = [named.get(b, b) if isinstance(b, str) else b for b in schema]
        kinds = {_kind(b) for b in branches}
        others = [b for b in branches if _kind(b) != "null"]
        if len(others) == 1:
            return _with_bytes(value, others[0], named, where, path)
        if kinds & _BYTES and "string" not in kinds and _is_base64(value):
            return _decode_base64(value, where, path)
        return value
    kind = _kind(schema)
    if kind in _BYTES and _is_base64(value):
        return _decode_base64(value, where, path)
    if kind in ("record", "error") and isinstance(value, dict):
        types = {f["name"]: f["type"] for f in schema.get("fields", [])}
        return {
            key: _with_bytes(item, types[key], named, where, f"{path}{key}.")
            if key in types
            else item
            for key, item in value.items()
        }
    if kind == "array" and isinstance(value, list):
        items = schema.get("items")
        return [_with_bytes(v, items, named, where, f"{path}{i}.") for i, v in enumerate(value)]
    if kind == "map" and isinstance(value, dict):
        values = schema.get("values")
        return {k: _with_bytes(v, values, named, where, f"{path}{k}.") for k, v in value.items()}
    return value


def _kind(schema: Any) -> Any:
    return schema.get("type") if isinstance(schema, dict) else schema


def _is_base64(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(_BASE64)


def _decode_base64(text: str, where: str, path: str) -> bytes:
    try:
        return base64.b64decode(text[len(_BASE64) :], validate=True)
    except binascii.Error as exc:
        shown = text if len(text) <= 40 else f"{text[:37]}..."
        raise ConfigError(
            f"{where}: field {path.rstrip('.')} is {shown!r}, which is not base64 after "
            f"'base64:' ({exc}); fix: write its bytes as \"base64:\" + their standard "
            "base64 (as --json prints them)"
        ) from None


def _one_source(texts: Sequence[str], value: str | None, file: Path | None) -> None:
    given = [
        name
        for name, present in (
            ("TEXT", bool(texts)),
            ("--value", value is not None),
            ("--file", file is not None),
        )
        if present
    ]
    if len(given) > 1:
        raise ConfigError(
            f"choose one of TEXT, --value and --file, got {' and '.join(given)}; fix: "
            "push them in separate commands, or all as lines of one --file"
        )


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
    """JSON lines are UTF-8 (whatever the locale): name the line that is not.

    A byte order mark at the start, as some editors write, is skipped.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        read = exc.object  # after the BOM, if any: exc.start counts from there
        line = read.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{file}:{line} is not UTF-8 (byte {read[exc.start]:#04x}): fix: save the file as UTF-8"
        ) from exc


def _object(text: str, where: str) -> dict[str, Any]:
    if text.startswith("\ufeff"):  # json's own words: "decode using utf-8-sig"
        raise ConfigError(
            f"{where} starts with a byte order mark (U+FEFF), which only the file may start "
            "with (as when files saved with one are joined); fix: remove it"
        )
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{where} is not JSON: {exc}") from exc
    except RecursionError:  # json gives up some 1,000 arrays or objects deep
        raise too_deep(where) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    check_depth(data, where)
    return data
