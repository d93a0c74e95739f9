"""What a query must be to be pushed: the checks ``push`` and the :class:`Client` share.

Both refuse, before anything is sent, what the stages would otherwise lose one
by one: an id too long for the ancestry header every record of the query
carries, a value larger than a record may be, a text that is not UTF-8, a
value nested deeper than the checks and codecs can walk.

>>> check_query_id("q-1", "the query")
>>> check_query_id("x" * 1001, "the query")  # doctest: +ELLIPSIS
Traceback (most recent call last):
    ...
alto_stream.errors.ConfigError: the query has a query id of 1,001 characters, more than 1,000 ...
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from alto_stream.errors import ConfigError
from alto_stream.settings import LIMIT_ENVS, env_limits

__all__ = [
    "MAX_QUERY_DEPTH",
    "MAX_QUERY_ID_CHARS",
    "MAX_RECORD_BYTES_ENV",
    "check_depth",
    "check_query_id",
    "check_size",
    "check_text",
    "max_record_bytes_from_env",
    "query_values",
    "too_deep",
]

MAX_QUERY_ID_CHARS = 1000
"""The longest query id: every record of the query carries it in its ancestry
header, which a stage refuses past ``WorkerOptions.max_ancestry_bytes`` (64 KiB)."""


def query_values(values: Iterable[Any], call: str) -> list[Any]:
    """``values`` as a list of queries; :class:`ConfigError` for one query given alone.

    A dict, a string or bytes are iterables too: their keys or letters were
    taken for as many queries, each then refused as "not a dict".

    >>> query_values([{"text": "a"}], "run")
    [{'text': 'a'}]
    >>> query_values({"text": "a"}, "run")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    alto_stream.errors.ConfigError: run takes a list of queries, got a dict: ...
    """
    if isinstance(values, Mapping | str | bytes) or not isinstance(values, Iterable):
        raise ConfigError(
            f"{call} takes a list of queries, got a {type(values).__name__}: for one "
            f"query, {call}([value])"
        )
    return list(values)


def check_query_id(query_id: str, where: str) -> None:
    """:class:`ConfigError` unless ``query_id`` is a string of 1 to 1,000 characters, UTF-8."""
    fix = f"give one of 1 to {MAX_QUERY_ID_CHARS:,} characters, or none (a fresh id)"
    if not isinstance(query_id, str):
        raise ConfigError(f"{where} has a query id of type {type(query_id).__name__}: {fix}")
    if not query_id:
        raise ConfigError(f"{where} has an empty query id: {fix}")
    if len(query_id) > MAX_QUERY_ID_CHARS:
        raise ConfigError(
            f"{where} has a query id of {len(query_id):,} characters, more than "
            f"{MAX_QUERY_ID_CHARS:,} (each record of the query carries it in its ancestry "
            f"header, limited by WorkerOptions.max_ancestry_bytes); fix: {fix}"
        )
    position = _lone_surrogate(query_id)
    if position is not None:
        raise ConfigError(
            f"{where} has a query id that cannot be encoded as UTF-8 (a lone surrogate "
            f"{query_id[position]!r} at position {position}); fix: {fix}, in valid Unicode"
        )


MAX_QUERY_DEPTH = 100
"""The deepest a query may nest dicts and lists (JSON objects and arrays) one within
another. The checks, the codec and ``--json`` walk a value recursively: far deeper
(a JSON line of 3,000 ``[``) and they die of Python's recursion limit."""


def check_depth(value: Any, where: str) -> None:
    """:class:`ConfigError` if ``value`` nests dicts and lists more than 100 deep.

    It walks without recursing, so a value of any depth (or one that holds
    itself) is refused, not a :class:`RecursionError`.
    """
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            items: Any = item.values()
        elif isinstance(item, list | tuple):
            items = item
        else:
            continue
        if depth > MAX_QUERY_DEPTH:
            raise too_deep(where)
        stack.extend((child, depth + 1) for child in items)


def too_deep(where: str) -> ConfigError:
    """The error for a query nested deeper than :data:`MAX_QUERY_DEPTH`."""
    return ConfigError(
        f"{where} is nested too deeply: more than {MAX_QUERY_DEPTH} levels of objects and "
        "arrays (dicts and lists) one within another; fix: nest it less deeply"
    )


def check_text(value: Any, where: str) -> None:
    """:class:`ConfigError` naming the field if a string in ``value`` is not valid UTF-8.

    A lone surrogate (``"\\ud800"`` in JSON, or bytes of another encoding in a
    command line) cannot be written to Avro; without this, the schema took the blame.
    """
    for field, text in _strings(value, ""):
        position = _lone_surrogate(text)
        if position is not None:
            name = f"field {field!r}" if field else "the value"
            raise ConfigError(
                f"{where}: the text of {name} cannot be encoded as UTF-8 (a lone surrogate "
                f"{text[position]!r} at position {position}); fix: give valid Unicode "
                "(UTF-8 input, or JSON escapes that pair)"
            )


MAX_RECORD_BYTES_ENV = LIMIT_ENVS["max_record_bytes"]


def max_record_bytes_from_env(default: int = 1_000_000) -> int:
    """``ALTO_MAX_RECORD_BYTES`` (:class:`ConfigError` when not a whole number > 0)."""
    return env_limits().get("max_record_bytes", default)


def check_size(size: int, where: str, max_bytes: int) -> None:
    """:class:`ConfigError` if a query encoded in ``size`` bytes is larger than ``max_bytes``."""
    if size > max_bytes:
        # Refused by Kafka mid-push, it left the queries before it pushed, unreported.
        raise ConfigError(
            f"{where} is {size:,} bytes, more than a record may be ({max_bytes:,}: "
            f"WorkerOptions.max_record_bytes, {MAX_RECORD_BYTES_ENV}, under Kafka's default "
            "max.message.bytes of 1 MiB); fix: shorten it"
        )


def _lone_surrogate(text: str) -> int | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def _strings(value: Any, field: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield field, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{field}.{key}" if field else str(key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _strings(item, f"{field}[{i}]")
