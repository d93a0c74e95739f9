"""Named types in Avro schema JSON: full names, and inlining the types a schema names.

A schema file may name types defined elsewhere (``"type": "alto.Text"``);
:func:`expand` inlines each where first used, so the result stands alone, as
Avro's parsing canonical form and any Avro implementation want it. Pure
functions on JSON values; unknown names are a :class:`SchemaError` that says
which name was meant.

>>> known = {"my.Lang": {"type": "enum", "name": "my.Lang", "symbols": ["en", "fr"]}}
>>> doc = {"type": "record", "name": "Doc", "namespace": "my",
...        "fields": [{"name": "lang", "type": "Lang"}]}
>>> expand(doc, "", known, set())["fields"][0]["type"]["symbols"]
['en', 'fr']
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from alto_stream.errors import SchemaError

__all__ = ["NAMED", "PRIMITIVES", "expand", "fullname", "inline_types", "normal", "top_name"]

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED = frozenset({"record", "error", "enum", "fixed"})


def fullname(name: str, namespace: str) -> str:
    """``name`` qualified by ``namespace`` (unless already dotted, or no namespace)."""
    return name if "." in name or not namespace else f"{namespace}.{name}"


def top_name(raw: dict[str, Any], origin: str) -> str:
    """The full name of the named schema ``raw``; :class:`SchemaError` (from ``origin``) if none."""
    name = raw.get("name")
    if raw.get("type") not in NAMED or not isinstance(name, str) or not name:
        raise SchemaError(
            f"{origin}: expected a named schema (record, enum or fixed with a name), "
            f"got {_short(raw)}"
        )
    return fullname(name, str(raw.get("namespace", "")))


def expand(
    schema: Any,
    namespace: str,
    known: Mapping[str, dict[str, Any]],
    done: set[str],
    field: str = "",
) -> Any:
    """The self-contained form of ``schema``: each named type inlined where first used.

    ``field`` names the field whose type this is (for errors).
    """
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return schema
        full = fullname(schema, namespace)
        if full in done:
            return full
        if full not in known:
            raise SchemaError(_unknown_type(schema, full, field, known))
        return expand(known[full], "", known, done)
    if isinstance(schema, list):
        return [expand(branch, namespace, known, done, field) for branch in schema]
    if not isinstance(schema, dict):
        raise SchemaError(f"expected an Avro schema (name, list or object), got {_short(schema)}")
    kind = schema.get("type")
    out = dict(schema)
    if kind in NAMED:
        full = fullname(str(schema.get("name")), str(schema.get("namespace", namespace)))
        if full in done:
            raise SchemaError(f"{full} is defined twice in one schema: expected one definition")
        done.add(full)
        out["name"] = full
        out.pop("namespace", None)
        inner = full.rpartition(".")[0]
        if "fields" in schema:
            out["fields"] = [
                {**f, "type": expand(f.get("type"), inner, known, done, f"{full}.{f.get('name')}")}
                if isinstance(f, dict)
                else f
                for f in schema["fields"]
            ]
    elif kind == "array":
        out["items"] = expand(schema.get("items"), namespace, known, done, field)
    elif kind == "map":
        out["values"] = expand(schema.get("values"), namespace, known, done, field)
    elif isinstance(kind, dict | list) or (isinstance(kind, str) and kind not in PRIMITIVES):
        return expand(kind, namespace, known, done, field)
    return out


def inline_types(schema: Any, namespace: str = "") -> dict[str, dict[str, Any]]:
    """The named types defined inside the named ``schema`` (not itself), by full name.

    Each comes with its full name and no namespace, as a definition of its own
    (names inside it resolve against its own namespace, as where it was written).
    """
    found: dict[str, dict[str, Any]] = {}

    def walk(node: Any, space: str, top: bool) -> None:
        if isinstance(node, list):
            for branch in node:
                walk(branch, space, False)
            return
        if not isinstance(node, dict):
            return
        kind = node.get("type")
        if kind in NAMED and isinstance(node.get("name"), str):
            full = fullname(node["name"], str(node.get("namespace", space)))
            if not top:
                found.setdefault(full, normal(node, space))
            space = full.rpartition(".")[0]
            for f in node.get("fields", []):
                if isinstance(f, dict):
                    walk(f.get("type"), space, False)
        elif kind in ("array", "map"):
            walk(node.get("items" if kind == "array" else "values"), space, False)
        elif isinstance(kind, dict | list):
            walk(kind, space, False)

    walk(schema, namespace, True)
    return found


def normal(definition: dict[str, Any], namespace: str = "") -> dict[str, Any]:
    """``definition`` of a named type with its full name and no namespace."""
    full = fullname(str(definition.get("name")), str(definition.get("namespace", namespace)))
    out = {k: v for k, v in definition.items() if k != "namespace"}
    out["name"] = full
    return out


def _unknown_type(written: str, full: str, field: str, known: Mapping[str, Any]) -> str:
    """Why ``written`` (read as ``full``) is no type: the field, and the name it resembles.

    Never the record holding the field, and never a name alike only in its namespace.
    """
    names = sorted(n for n in known if n != field.rpartition(".")[0])
    short = full.rpartition(".")[2]
    close = [
        name
        for name in difflib.get_close_matches(written, sorted(PRIMITIVES) + names, n=3)
        + difflib.get_close_matches(full, names, n=3)
        if difflib.SequenceMatcher(None, short, name.rpartition(".")[2]).ratio() >= 0.6
    ]
    where = f"field {field} has " if field else ""
    if close:
        fix = f'did you mean {close[0]!r}? fix: write "type": "{close[0]}" (or add {full}.avsc)'
    else:
        fix = f"fix: add {full}.avsc, or use a primitive ({', '.join(sorted(PRIMITIVES))})"
    return (
        f"{where}unknown type {full!r}: expected a primitive or a named type of the registry; {fix}"
    )


def _short(value: object, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
