"""An app's own Avro schemas: files, folders, dicts and Python types, on top of the built-ins.

An app names its schemas in ``App(..., schemas=[...])``; each source is one of

- a folder of ``.avsc`` files (one named type per file, the file named after
  it, as in the built-in ``schemas/``), with its own ``history/`` of older
  versions when it has one;
- one ``.avsc`` file;
- a dict: a named Avro schema written in code;
- a dataclass or a ``TypedDict``: its schema is derived (see :func:`schema_of`).

Relative paths are read from the folder of the module that made the app, so
``schemas=["schemas"]`` is the ``schemas/`` folder beside the app's module.
The built-in schemas (``alto.Text``, ``alto.Query``...) are always there, and
app schemas may name them. A name defined twice with two definitions is a
:class:`SchemaError`.

>>> from typing import TypedDict
>>> class Thing(TypedDict):
...     title: str
...     score: float
>>> schema_of(Thing, name="my.Thing")["fields"]
[{'name': 'title', 'type': 'string'}, {'name': 'score', 'type': 'double'}]
>>> registry = build_registry([Thing], Path("."))
>>> schema_name(Thing) in registry.names(), "alto.Text" in registry.names()
(True, True)
"""

from __future__ import annotations

import dataclasses
import enum
import os
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints, is_typeddict

from alto_stream import settings
from alto_stream.codec import SchemaRegistry
from alto_stream.errors import SchemaError

__all__ = [
    "SchemaSource",
    "as_record",
    "build_registry",
    "is_schema_type",
    "schema_name",
    "schema_of",
]

SchemaSource = str | os.PathLike[str] | Mapping[str, Any] | type
"""What ``App(schemas=...)`` takes: a folder or ``.avsc`` path, a schema dict, or a type."""

_PRIMITIVE: dict[Any, str] = {
    str: "string",
    int: "long",
    float: "double",
    bool: "boolean",
    bytes: "bytes",
}

_BASES: dict[Path, SchemaRegistry] = {}
"""The built-in registry per schemas folder, loaded once per process and copied per app."""


def is_schema_type(value: object) -> bool:
    """True for a class a schema can be derived from (a dataclass or a ``TypedDict``)."""
    return isinstance(value, type) and (dataclasses.is_dataclass(value) or is_typeddict(value))


def schema_name(cls: type) -> str:
    """The Avro name of a type's derived schema: ``__avro_name__``, else module.QualName."""
    explicit = getattr(cls, "__avro_name__", None)
    if isinstance(explicit, str) and explicit:
        return explicit
    return f"{cls.__module__}.{cls.__qualname__}".replace("<locals>.", "")


def schema_of(cls: type, *, name: str | None = None) -> dict[str, Any]:
    """The Avro record schema of a dataclass or ``TypedDict``.

    ``str``, ``int``, ``float``, ``bool`` and ``bytes`` become string, long,
    double, boolean and bytes; ``X | None`` a union with null (default null);
    ``list[X]`` an array, ``dict[str, X]`` a map, a string ``Enum`` an enum,
    and a nested dataclass or ``TypedDict`` a nested record. Dataclass
    defaults of those plain types become Avro defaults, and a ``NotRequired``
    key of a ``TypedDict`` is optional (a union with null). Anything else is a
    :class:`SchemaError` naming the field.
    """
    return _record(cls, name or schema_name(cls), set())


def as_record(value: Any) -> Any:
    """``value`` as the Avro writer takes it: a dataclass instance becomes a dict.

    Nested dataclass instances, lists of them and ``Enum`` members inside it
    are converted too; anything else (a plain dict, a TypedDict) is returned as is.

    >>> @dataclasses.dataclass
    ... class Point:
    ...     x: int
    ...     tags: list[str]
    >>> as_record(Point(1, ["a"]))
    {'x': 1, 'tags': ['a']}
    """
    if type(value) is dict or not dataclasses.is_dataclass(value) or isinstance(value, type):
        return value
    return _plain(value)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _record(cls: type, name: str, seen: set[str]) -> dict[str, Any]:
    if not is_schema_type(cls):
        raise SchemaError(
            f"cannot derive an Avro schema from {cls!r}: expected a dataclass or a TypedDict; "
            "fix: write the schema as an .avsc file or a dict"
        )
    seen.add(name)
    try:
        hints = get_type_hints(cls, include_extras=True)
    except Exception as exc:  # unresolvable annotations raise NameError, TypeError...
        raise SchemaError(f"cannot read the type hints of {cls.__qualname__}: {exc}") from exc
    optional_keys: frozenset[str] = getattr(cls, "__optional_keys__", frozenset())
    defaults = _dataclass_defaults(cls)
    fields = []
    for key, hint in hints.items():
        if dataclasses.is_dataclass(cls) and key not in _init_fields(cls):  # a ClassVar
            continue
        optional = key in optional_keys
        if get_origin(hint) in (typing.NotRequired, typing.Required):
            optional = get_origin(hint) is typing.NotRequired
            hint = get_args(hint)[0]
        avro = _type(hint, f"{cls.__qualname__}.{key}", name, seen)
        if optional and not _nullable(avro):
            avro = ["null", *avro] if isinstance(avro, list) else ["null", avro]
        field: dict[str, Any] = {"name": key, "type": avro}
        if key in defaults:
            default = defaults[key]
            if _nullable(avro) and default is not None:  # Avro: the default's branch first
                field["type"] = [*(b for b in avro if b != "null"), "null"]
            field["default"] = default
        elif _nullable(avro):
            field["default"] = None
        fields.append(field)
    return {"type": "record", "name": name, "fields": fields}


def _init_fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _dataclass_defaults(cls: type) -> dict[str, Any]:
    if not dataclasses.is_dataclass(cls):
        return {}
    found = {}
    for f in dataclasses.fields(cls):
        default = f.default
        if isinstance(default, enum.Enum):
            default = default.value
        if isinstance(default, bytes):  # Avro's JSON form: one code point 0-255 per byte
            default = default.decode("latin-1")
        if default is not dataclasses.MISSING and isinstance(default, str | int | float | None):
            found[f.name] = default
    return found


def _nullable(avro: Any) -> bool:
    return isinstance(avro, list) and "null" in avro


def _type(hint: Any, where: str, parent: str, seen: set[str]) -> Any:
    if hint in _PRIMITIVE:
        return _PRIMITIVE[hint]
    origin, args = get_origin(hint), get_args(hint)
    if origin is typing.Annotated:
        return _type(args[0], where, parent, seen)
    if origin in (Union, types.UnionType):
        branches = [_type(a, where, parent, seen) for a in args if a is not type(None)]
        if type(None) in args:
            return ["null", *branches]
        return branches if len(branches) > 1 else branches[0]
    if origin in (list, tuple) and args and (origin is list or args[-1] is Ellipsis):
        return {"type": "array", "items": _type(args[0], where, parent, seen)}
    if origin is dict and args and args[0] is str:
        return {"type": "map", "values": _type(args[1], where, parent, seen)}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {
            "type": "enum",
            "name": _nested_name(hint, parent),
            "symbols": [str(m.value) for m in hint],
        }
    if is_schema_type(hint):
        nested = _nested_name(hint, parent)
        return nested if nested in seen else _record(hint, nested, seen)
    raise SchemaError(
        f"cannot map the type of {where} ({hint!r}) to Avro: expected str, int, float, bool, "
        "bytes, X | None, list[X], dict[str, X], an Enum, a dataclass or a TypedDict"
    )


def _nested_name(cls: type, parent: str) -> str:
    explicit = getattr(cls, "__avro_name__", None)
    if isinstance(explicit, str) and explicit:
        return explicit
    namespace = parent.rpartition(".")[0]
    return f"{namespace}.{cls.__name__}" if namespace else cls.__name__


def build_registry(sources: Iterable[SchemaSource], base: Path) -> SchemaRegistry:
    """The built-in schemas plus ``sources`` (relative paths read from ``base``)."""
    builtin_dir = settings.schemas_dir().resolve()
    loaded = _BASES.get(builtin_dir)
    if loaded is None:
        loaded = _BASES[builtin_dir] = SchemaRegistry(builtin_dir)
    registry = loaded.copy()
    for source in sources:
        add_source(registry, source, base)
    return registry


def add_source(registry: SchemaRegistry, source: SchemaSource, base: Path) -> list[str]:
    """Add one source's schemas to ``registry``; return the names it defines."""
    if isinstance(source, type):
        return [registry.register(schema_of(source)).name]
    if isinstance(source, Mapping):
        return [registry.register(dict(source)).name]
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        path = path if path.is_absolute() else base / path
        if path.is_dir():
            return registry.add_directory(path)
        if path.suffix == ".avsc" and path.is_file():
            return registry.add_directory(path.parent, only=[path])
        raise SchemaError(
            f"app schemas: {path} is neither a folder of .avsc files nor an .avsc file; "
            "fix: correct the path (relative paths are read from the app module's folder)"
        )
    raise SchemaError(
        f"app schemas: cannot use {source!r}: expected a folder or .avsc path, a schema dict, "
        "a dataclass or a TypedDict"
    )
