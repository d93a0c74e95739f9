"""avro_check: which values fit, and which schema versions can read which."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from fastavro.read import SchemaResolutionError

from alto_stream.avro_check import incompatibility, misfit


def _rec(*fields: dict[str, Any], name: str = "t.R") -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields)}


def _field(name: str, kind: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, **extra}


def _enum(*symbols: str, **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "t.E", "symbols": list(symbols), **extra}


OLD = _rec(_field("text", "string"), _field("n", "int"))

COMPATIBLE = [
    ("a field added with a default", _rec(*OLD["fields"], _field("lang", "string", default=""))),
    ("a field removed", _rec(_field("text", "string"))),
    ("int promoted to long", _rec(_field("text", "string"), _field("n", "long"))),
    ("int promoted to double", _rec(_field("text", "string"), _field("n", "double"))),
    ("string read as bytes", _rec(_field("text", "bytes"), _field("n", "int"))),
    ("made nullable", _rec(_field("text", ["null", "string"]), _field("n", "int"))),
    ("renamed with an alias", _rec(_field("body", "string", aliases=["text"]), _field("n", "int"))),
]

INCOMPATIBLE = [
    (
        "a field added without a default",
        _rec(*OLD["fields"], _field("lang", "string")),
        "field t.R.lang (string) is new and has no default",
    ),
    (
        "long narrowed to int",
        _rec(_field("text", "string"), _field("n", "string")),
        "t.R.n changed from int to string",
    ),
    (
        "a union that lost the branch",
        _rec(_field("text", ["null", "long"]), _field("n", "int")),
        "t.R.text was written as string",
    ),
]


@pytest.mark.parametrize(("case", "new"), COMPATIBLE, ids=[c for c, _ in COMPATIBLE])
def test_compatible_changes_pass_and_fastavro_agrees(case: str, new: dict[str, Any]) -> None:
    assert incompatibility(new, OLD) is None
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(OLD), {"text": "x", "n": 3})
    buf.seek(0)
    fastavro.schemaless_reader(buf, fastavro.parse_schema(OLD), fastavro.parse_schema(new))


@pytest.mark.parametrize(("case", "new", "said"), INCOMPATIBLE, ids=[c for c, _, _ in INCOMPATIBLE])
def test_breaking_changes_are_named_and_fastavro_agrees(
    case: str, new: dict[str, Any], said: str
) -> None:
    problem = incompatibility(new, OLD)
    assert problem is not None and said in problem
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(OLD), {"text": "x", "n": 3})
    buf.seek(0)
    with pytest.raises((SchemaResolutionError, ValueError, TypeError)):
        fastavro.schemaless_reader(buf, fastavro.parse_schema(OLD), fastavro.parse_schema(new))


def test_enum_symbols_and_nested_records() -> None:
    old = _rec(_field("e", _enum("A", "B")))
    assert "lost the symbol B" in str(incompatibility(_rec(_field("e", _enum("A"))), old))
    assert incompatibility(_rec(_field("e", _enum("A", default="A"))), old) is None
    assert incompatibility(_rec(_field("e", _enum("A", "B", "C"))), old) is None
    inner_old = _rec(_field("x", "long"), name="t.In")
    inner_new = _rec(_field("x", "long"), _field("y", "long"), name="t.In")
    nested = incompatibility(
        _rec(_field("items", {"type": "array", "items": inner_new})),
        _rec(_field("items", {"type": "array", "items": inner_old})),
    )
    assert nested is not None and "field t.In.y (long) is new" in nested


@pytest.mark.parametrize(
    ("schema", "value", "said"),
    [
        ("long", 1.5, "is 1.5, expected long"),
        ("long", True, "is True, expected long"),
        ("int", 2**31, "expected int"),
        ("double", False, "is False, expected double"),
        ({"type": "map", "values": "long"}, {"a": 1.0}, "['a'] is 1.0"),
        ({"type": "array", "items": "string"}, "abc", "expected array of string"),
    ],
)
def test_misfits_name_the_field(schema: Any, value: Any, said: str) -> None:
    problem = misfit(_rec(_field("f", schema)), {"f": value})
    assert problem is not None and problem.startswith("t.R.f") and said in problem


@pytest.mark.parametrize(
    ("schema", "value"),
    [("double", 3), ("float", 2**40), ("long", 2**63 - 1), (["null", "double"], 1), ("int", -1)],
)
def test_values_that_fit(schema: Any, value: Any) -> None:
    assert misfit(_rec(_field("f", schema)), {"f": value}) is None
