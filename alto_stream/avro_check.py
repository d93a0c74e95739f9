"""Two checks on Avro schemas in their JSON form: does a value fit, can one version read another.

Both work on self-contained schemas (:attr:`alto_stream.schema.Schema.raw`: every
named type defined where first used, referenced by full name afterwards) and
answer in words that name the field, or None when all is well.

:func:`misfit` is stricter than fastavro's writer, which casts what it is given
(``1.5`` or ``True`` for a ``long`` is written as ``1``): ints (not bools) for
``int`` and ``long``, ints or floats (not bools) for ``float`` and ``double``.

>>> text = {"type": "record", "name": "alto.Text", "fields": [{"name": "text", "type": "string"}]}
>>> misfit(text, {"txt": "oops"})
"missing field 'text' (string); unknown field 'txt'"
>>> misfit(text, "just a string")
"expected a dict for alto.Text (field text: string), got str 'just a string'"

:func:`incompatibility` follows Avro schema resolution (the reader is the
current version, the writer an archived one): fields the reader adds need a
default, fields it drops are skipped, ``int`` -> ``long`` -> ``float`` ->
``double`` and ``string`` <-> ``bytes`` are promotions, enum symbols must stay
(or the reader needs a default symbol), unions resolve branch by branch.

>>> old = {"type": "record", "name": "my.Doc", "fields": [{"name": "text", "type": "string"}]}
>>> new = {**old, "fields": [*old["fields"], {"name": "lang", "type": "string"}]}
>>> print(incompatibility(new, old))
field my.Doc.lang (string) is new and has no default: records written before cannot fill it
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

__all__ = ["ValueCheck", "field_misfits", "incompatibility", "misfit", "named_types", "type_name"]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})
_KINDS = _PRIMITIVES | _NAMED | {"array", "map"}
_RANGES = {"int": (-(1 << 31), (1 << 31) - 1), "long": (-(1 << 63), (1 << 63) - 1)}
_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}


def misfit(schema: Any, value: Any) -> str | None:
    """Why ``value`` does not fit ``schema`` (one short line naming the field), or None."""
    return ValueCheck(schema)(value)


class ValueCheck:
    """:func:`misfit` for one schema, its named types found once."""

    def __init__(self, schema: Any) -> None:
        self.schema = schema
        self._values = _Values(named_types(schema))

    def __call__(self, value: Any) -> str | None:
        """Why ``value`` does not fit the schema, or None."""
        return self._values.misfit(self.schema, value, "")


def incompatibility(reader: Any, writer: Any) -> str | None:
    """Why ``reader`` cannot read what ``writer`` wrote (naming the field), or None."""
    return _Resolution(named_types(reader), named_types(writer)).check(reader, writer, "")


def field_misfits(record: Mapping[str, Any], value: Mapping[str, Any]) -> str:
    """What is wrong with ``value``'s field names for a record schema ('' if nothing).

    The required fields it lacks and those the schema does not have (an Avro
    writer would drop those silently: most likely a misspelt field).

    >>> field_misfits({"fields": [{"name": "text", "type": "string"}]}, {"txt": "x"})
    "missing field 'text' (string); unknown field 'txt'"
    """
    fields = [f for f in record.get("fields", []) if isinstance(f, dict)]
    names = {f["name"] for f in fields}
    missing = [
        f"{f['name']!r} ({type_name(f['type'])})"
        for f in fields
        if f["name"] not in value and "default" not in f
    ]
    unknown = [repr(key) for key in value if key not in names]
    parts = [_plural("missing field", missing)] if missing else []
    parts += [_plural("unknown field", unknown)] if unknown else []
    return "; ".join(parts)


def type_name(schema: Any, named: Mapping[str, Any] | None = None) -> str:
    """A schema in a few words: ``string``, ``array of double``, ``null or long``, a name."""
    if isinstance(schema, list):
        return " or ".join(type_name(branch) for branch in schema)
    if isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "array":
            return f"array of {type_name(schema.get('items'))}"
        if kind == "map":
            return f"map of {type_name(schema.get('values'))}"
        if kind in _NAMED:
            return str(schema.get("name"))
        return type_name(kind)
    return str(schema)


def named_types(schema: Any, found: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every named type ``schema`` defines, by full name."""
    found = {} if found is None else found
    if isinstance(schema, list):
        for branch in schema:
            named_types(branch, found)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in _NAMED and isinstance(schema.get("name"), str):
            found.setdefault(schema["name"], schema)
        for f in schema.get("fields", ()) if kind in ("record", "error") else ():
            if isinstance(f, dict):
                named_types(f.get("type"), found)
        if kind == "array":
            named_types(schema.get("items"), found)
        elif kind == "map":
            named_types(schema.get("values"), found)
        elif isinstance(kind, dict | list):
            named_types(kind, found)
    return found


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _plural(word: str, items: list[str]) -> str:
    return f"{word}{'s' if len(items) > 1 else ''} {', '.join(items)}"


class _Values:
    def __init__(self, named: dict[str, Any]) -> None:
        self.named = named

    def misfit(self, schema: Any, value: Any, path: str) -> str | None:
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            schema = self.named.get(schema)
        if isinstance(schema, list):
            return self._union(schema, value, path)
        if isinstance(schema, dict):
            if "logicalType" in schema:
                return None  # a date, a decimal...: fastavro converts and checks those
            kind = schema.get("type")
            if kind in ("record", "error"):
                return self._record(schema, value, path)
            if kind == "enum":
                symbols = schema.get("symbols", [])
                if type(value) is str and value in symbols:
                    return None
                return f"{path} is {_short(value)}, expected one of {', '.join(symbols)}"
            if kind == "fixed":
                if isinstance(value, bytes | bytearray) and len(value) == schema.get("size"):
                    return None
                return f"{path} is {_short(value)}, expected {schema.get('size')} bytes"
            if kind == "array":
                return self._array(schema.get("items"), value, path)
            if kind == "map":
                return self._map(schema.get("values"), value, path)
            if kind not in _PRIMITIVES:
                return self.misfit(kind, value, path)  # {"type": "my.Name"}, or nested
            schema = kind
        if schema in _PRIMITIVES:
            return None if _fits(schema, value) else f"{path} is {_short(value)}, expected {schema}"
        return None  # not a schema we can judge: fastavro decides

    def _record(self, schema: dict[str, Any], value: Any, path: str) -> str | None:
        name = str(schema.get("name"))
        fields = [f for f in schema.get("fields", []) if isinstance(f, dict)]
        where = f"{path}: " if path else ""
        if not isinstance(value, Mapping):
            listed = ", ".join(f"{f['name']}: {type_name(f['type'])}" for f in fields[:6])
            more = ", ..." if len(fields) > 6 else ""
            word = "field" if len(fields) == 1 else "fields"
            return (
                f"{where}expected a dict for {name} ({word} {listed}{more}), "
                f"got {type(value).__name__} {_short(value)}"
            )
        names = field_misfits(schema, value)
        if names:
            return where + names
        for f in fields:
            if f["name"] in value:
                problem = self.misfit(f["type"], value[f["name"]], f"{name}.{f['name']}")
                if problem:
                    return problem
        return None

    def _union(self, branches: list[Any], value: Any, path: str) -> str | None:
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
            return None  # fastavro's (name, value) notation picks the branch itself
        problems = [self.misfit(branch, value, path) for branch in branches]
        if None in problems:
            return None
        others = [i for i, b in enumerate(branches) if b != "null"]
        if value is not None and len(others) == 1:
            return problems[others[0]]  # X | None given something else: what X wanted
        return f"{path} is {_short(value)}, expected {type_name(branches)}"

    def _array(self, items: Any, value: Any, path: str) -> str | None:
        if isinstance(value, str | bytes | bytearray | Mapping) or not hasattr(value, "__len__"):
            return f"{path} is {_short(value)}, expected array of {type_name(items)}"
        for i, item in enumerate(value):
            problem = self.misfit(items, item, f"{path}[{i}]")
            if problem:
                return problem
        return None

    def _map(self, values: Any, value: Any, path: str) -> str | None:
        if not isinstance(value, Mapping):
            return f"{path} is {_short(value)}, expected map of {type_name(values)}"
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has key {_short(key)}, expected string keys"
            problem = self.misfit(values, item, f"{path}[{key!r}]")
            if problem:
                return problem
        return None


def _fits(kind: str, value: Any) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind in _RANGES:
        low, high = _RANGES[kind]
        return (
            isinstance(value, numbers.Integral)
            and not isinstance(value, bool)
            and low <= int(value) <= high
        )
    if kind in ("float", "double"):
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    return isinstance(value, bytes | bytearray)  # bytes


class _Resolution:
    def __init__(self, reader_named: dict[str, Any], writer_named: dict[str, Any]) -> None:
        self.reader_named = reader_named
        self.writer_named = writer_named
        self.seen: set[tuple[str, str]] = set()  # record pairs under check (recursion)

    def check(self, reader: Any, writer: Any, path: str) -> str | None:
        reader = self._deref(reader, self.reader_named)
        writer = self._deref(writer, self.writer_named)
        if isinstance(writer, list):
            for branch in writer:  # every branch the writer may have written must resolve
                problem = self.check(reader, branch, path)
                if problem:
                    return problem
            return None
        if isinstance(reader, list):
            problems = [self.check(branch, writer, path) for branch in reader]
            if None in problems:
                return None
            alike = [
                problem
                for branch, problem in zip(reader, problems, strict=True)
                if _kind(self._deref(branch, self.reader_named)) == _kind(writer)
            ]
            if alike:  # X | None where X changed: how X changed
                return alike[0]
            return (
                f"{path or 'the value'} was written as {type_name(writer)}, which the reader's "
                f"{type_name(reader)} does not take"
            )
        r_kind, w_kind = _kind(reader), _kind(writer)
        if r_kind in _PRIMITIVES and w_kind in _PRIMITIVES:
            if r_kind == w_kind or r_kind in _PROMOTIONS.get(w_kind, ()):
                return None
            return f"{path or 'the value'} changed from {w_kind} to {r_kind}: not an Avro promotion"
        if r_kind != w_kind:
            return f"{path or 'the value'} changed from {type_name(writer)} to {type_name(reader)}"
        if r_kind == "array":
            return self.check(reader.get("items"), writer.get("items"), f"{path}[]")
        if r_kind == "map":
            return self.check(reader.get("values"), writer.get("values"), f"{path}[]")
        if not _same_name(reader, writer):
            return (
                f"{path or 'the value'} changed from {writer.get('name')} to "
                f"{reader.get('name')} (no alias)"
            )
        if r_kind == "fixed" and reader.get("size") != writer.get("size"):
            return f"{path} changed from {writer.get('size')} to {reader.get('size')} bytes"
        if r_kind == "enum":
            lost = [s for s in writer.get("symbols", []) if s not in reader.get("symbols", [])]
            if lost and "default" not in reader:
                return (
                    f"enum {reader.get('name')} lost the {_plural('symbol', lost)} that older "
                    "records may hold"
                )
            return None
        return self._record(reader, writer)

    def _record(self, reader: dict[str, Any], writer: dict[str, Any]) -> str | None:
        pair = (str(reader.get("name")), str(writer.get("name")))
        if pair in self.seen:
            return None
        self.seen.add(pair)
        written = {f["name"]: f for f in writer.get("fields", [])}
        for f in reader.get("fields", []):
            here = f"{reader.get('name')}.{f['name']}"
            old = next(
                (written[n] for n in [f["name"], *f.get("aliases", [])] if n in written), None
            )
            if old is None:
                if "default" not in f:
                    return (
                        f"field {here} ({type_name(f['type'])}) is new and has no default: "
                        "records written before cannot fill it"
                    )
                continue
            problem = self.check(f["type"], old["type"], here)
            if problem:
                return problem
        return None

    @staticmethod
    def _deref(schema: Any, named: dict[str, Any]) -> Any:
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            return named.get(schema, schema)
        if isinstance(schema, dict):
            kind = schema.get("type")
            if isinstance(kind, dict | list):
                return kind
            if isinstance(kind, str) and kind not in _KINDS and "logicalType" not in schema:
                return named.get(kind, kind)
        return schema


def _kind(schema: Any) -> str:
    if isinstance(schema, dict):
        return str(schema.get("type"))
    return str(schema)


def _same_name(reader: dict[str, Any], writer: dict[str, Any]) -> bool:
    names = {str(n).rpartition(".")[2] for n in [reader.get("name"), *reader.get("aliases", [])]}
    return str(writer.get("name")).rpartition(".")[2] in names
