"""Avro field defaults as the values they stand for (bytes and fixed from their JSON text).

A schema's JSON writes the default of a ``bytes`` or ``fixed`` field as a string
whose code points 0-255 are the bytes (the Avro specification: ``"\\u00ff"`` is
the byte 0xff, so ISO-8859-1). fastavro hands that string as it is to its writer,
which then refuses every record that leaves the field out (``a bytes-like object
is required, not 'str'``), and to its reader, which fills an old record's missing
field with a ``str``. :func:`decoded_defaults` gives the schema to write and read
with: the same schema, those defaults turned into ``bytes`` (inside unions,
records, arrays and maps too); the JSON form stays as it is for everything else
(fingerprints ignore defaults).

>>> decoded_defaults({"type": "record", "name": "my.J",
...                   "fields": [{"name": "b", "type": "bytes", "default": "\\u00ffA"}]})
{'type': 'record', 'name': 'my.J', 'fields': [{'name': 'b', 'type': 'bytes', 'default': b'\\xffA'}]}
"""

from __future__ import annotations

from typing import Any

from alto_stream.errors import SchemaError

__all__ = ["decoded_defaults"]

_NAMED = frozenset({"record", "error", "enum", "fixed"})


def decoded_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with its bytes and fixed defaults as ``bytes``; :class:`SchemaError` if one is
    not a string of code points 0-255. ``raw`` itself when it has none (nothing copied)."""
    walk = _Walk()
    result = walk.schema(raw, "")
    return result if walk.changed else raw


class _Walk:
    """One walk over a schema: the named types seen so far, and whether a default changed."""

    def __init__(self) -> None:
        self.named: dict[str, Any] = {}
        self.changed = False

    def schema(self, schema: Any, namespace: str) -> Any:
        if isinstance(schema, list):
            return [self.schema(branch, namespace) for branch in schema]
        if not isinstance(schema, dict):
            return schema
        kind = schema.get("type")
        name = _full_name(schema, namespace) if kind in _NAMED else ""
        if name:
            self.named[name] = schema
            namespace = name.rpartition(".")[0]
        if kind in ("record", "error"):
            fields = [self.field(f, namespace, name) for f in schema.get("fields", [])]
            schema = {**schema, "fields": fields}
            self.named[name] = schema
        elif kind == "array":
            schema = {**schema, "items": self.schema(schema.get("items"), namespace)}
        elif kind == "map":
            schema = {**schema, "values": self.schema(schema.get("values"), namespace)}
        return schema

    def field(self, field: Any, namespace: str, record: str) -> Any:
        if not isinstance(field, dict):
            return field
        field = {**field, "type": self.schema(field.get("type"), namespace)}
        if "default" in field:
            where = f"{record}.{field.get('name')}"
            field["default"] = self.value(field["default"], field["type"], namespace, where)
        return field

    def value(self, value: Any, schema: Any, namespace: str, where: str) -> Any:
        """``value`` (a JSON default) as a value of ``schema``."""
        if isinstance(schema, str):
            schema = self.named.get(schema) or self.named.get(f"{namespace}.{schema}") or schema
        if isinstance(schema, list):  # a union's default is of its first branch
            return self.value(value, schema[0], namespace, where) if schema else value
        kind = schema.get("type") if isinstance(schema, dict) else schema
        if kind in ("bytes", "fixed") and isinstance(value, str):
            self.changed = True
            try:
                return value.encode("latin-1")
            except UnicodeEncodeError:
                raise SchemaError(
                    f"the default of {where} ({kind}) is {value[:40]!r}, which has a character "
                    "over \\u00ff; fix: an Avro bytes default is a string of code points "
                    "0-255, one per byte (\\u00ff for the byte 0xff)"
                ) from None
        if kind in ("record", "error") and isinstance(value, dict):
            types = {f.get("name"): f.get("type") for f in schema.get("fields", [])}
            inner = _full_name(schema, namespace).rpartition(".")[0]
            return {
                key: self.value(item, types[key], inner, f"{where}.{key}") if key in types else item
                for key, item in value.items()
            }
        if kind == "array" and isinstance(value, list):
            return [self.value(item, schema.get("items"), namespace, where) for item in value]
        if kind == "map" and isinstance(value, dict):
            values = schema.get("values")
            return {key: self.value(item, values, namespace, where) for key, item in value.items()}
        return value


def _full_name(schema: dict[str, Any], namespace: str) -> str:
    name = str(schema.get("name", ""))
    if "." in name:
        return name
    space = schema.get("namespace", namespace)
    return f"{space}.{name}" if space else name
