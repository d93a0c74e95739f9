"""Avro for payloads and headers: the schema registry and the codec.

This is the only module that imports fastavro. Schemas live as ``.avsc`` files,
one per named type, the file named after the type's full name
(``schemas/alto.Text.avsc``). A schema may name types defined in other files
(a type that other files name needs its own file); the registry inlines them,
so every :class:`Schema` is self-contained and its fingerprint (CRC-64-AVRO of
the parsing canonical form) is the one any Avro implementation computes.

Evolution: a record names its writer schema by fingerprint; the reader resolves
it to the current version of that schema (fields added with defaults, fields
removed: the Avro rules). Older versions stay readable because every version
ever released is kept, self-contained, in ``schemas/history/<name>.<fp>.avsc``;
:meth:`SchemaRegistry.archive` writes the snapshot of each current schema, and a
test fails while one is missing.

>>> codec = Codec()
>>> data = codec.encode("alto.Text", {"text": "hello"})
>>> codec.decode(data, codec.registry.get("alto.Text").fingerprint)
{'text': 'hello'}
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import fastavro
from fastavro.read import SchemaResolutionError
from fastavro.schema import fingerprint as _fingerprint
from fastavro.schema import to_parsing_canonical_form

from alto_stream import avro_check, avro_fast, settings
from alto_stream.avro_defaults import decoded_defaults
from alto_stream.errors import DecodeError, SchemaError

__all__ = [
    "HISTORY_DIR",
    "SINGLE_OBJECT_MAGIC",
    "Codec",
    "Schema",
    "SchemaRegistry",
]

log = logging.getLogger(__name__)

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
"""The two bytes that open an Avro single-object encoding (then the 8-byte fingerprint)."""

HISTORY_DIR = "history"
"""The subfolder of the schemas directory that keeps every released version."""

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})
_HEADER_LEN = len(SINGLE_OBJECT_MAGIC) + 8
_WARNED: set[tuple[str, bytes]] = set()  # (folder, fingerprint) said not archived, once each
_BYTES = (bytes, bytearray, memoryview)
# Value errors fastavro's writer raises for a value that does not fit its schema.
_ENCODE_ERRORS = (TypeError, ValueError, AttributeError, KeyError, OverflowError, struct.error)


@dataclass(frozen=True)
class Schema:
    """One version of a named Avro schema.

    ``raw`` is the self-contained JSON form (every referenced type inlined, names
    fully qualified): hand it to any Avro implementation. ``fingerprint`` is the
    8-byte little-endian CRC-64-AVRO of its parsing canonical form, as in the
    Avro single-object encoding.
    """

    name: str
    fingerprint: bytes
    parsed: Any = field(compare=False, repr=False)
    raw: dict[str, Any] = field(compare=False, repr=False)
    canonical_form: str = field(default="", compare=False, repr=False)
    # Compiled reader and writer (see alto_stream.avro_fast), tried before fastavro; None
    # for schemas only fastavro handles.
    read_fast: avro_fast.Reader | None = field(default=None, compare=False, repr=False)
    write_fast: avro_fast.Writer | None = field(default=None, compare=False, repr=False)
    # Why a value does not fit (checked before fastavro's writer, which casts what it gets).
    misfit: avro_check.ValueCheck | None = field(default=None, compare=False, repr=False)

    @property
    def fingerprint_hex(self) -> str:
        """The fingerprint as 16 hex digits (as in history file names)."""
        return self.fingerprint.hex()

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> Schema:
        """Parse a self-contained named schema; :class:`SchemaError` if it is not valid Avro."""
        name = _top_name(raw, "schema")
        resolved = decoded_defaults(raw)
        try:
            parsed = fastavro.parse_schema(raw, named_schemas={})  # checks the defaults too
            canonical = to_parsing_canonical_form(parsed)
            if resolved is not raw:
                # Written and read with bytes and fixed defaults as bytes, not their JSON text
                # (fastavro's parser wants the text, its writer and reader the bytes).
                parsed = fastavro.parse_schema(
                    resolved, named_schemas={}, _ignore_default_error=True
                )
        except Exception as exc:  # fastavro's parser raises many types; report them as one
            raise SchemaError(f"invalid Avro schema {name}: {type(exc).__name__}: {exc}") from exc
        fingerprint = bytes.fromhex(_fingerprint(canonical, "CRC-64-AVRO"))
        return cls(
            name,
            fingerprint,
            parsed,
            raw,
            canonical,
            avro_fast.compile_reader(resolved),
            avro_fast.compile_writer(resolved),
            avro_check.ValueCheck(raw),
        )


class SchemaRegistry:
    """Every schema this process knows: current versions by name, all versions by fingerprint.

    Loads each ``*.avsc`` of ``directory`` (default :func:`settings.schemas_dir`)
    as a current version, and each snapshot under ``history/`` as an older one.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else settings.schemas_dir()
        self._current: dict[str, Schema] = {}
        self._by_fp: dict[bytes, Schema] = {}
        self._definitions: dict[str, dict[str, Any]] = {}  # what references resolve to
        self._origins: dict[str, Path] = {}  # the folder each current schema was read from
        self.folders: list[Path] = []  # every folder read (its .avsc and history/), in order
        self.in_code: list[str] = []  # names registered in code (dicts, dataclasses, TypedDicts)
        self._load()

    # -- lookup -------------------------------------------------------------

    def get(self, name: str) -> Schema:
        """The current version of schema ``name``; :class:`SchemaError` when unknown."""
        schema = self._current.get(name)
        if schema is None:
            raise SchemaError(
                f"unknown schema {name!r}: expected one of {', '.join(self.names()) or '(none)'}; "
                f"fix: add {name}.avsc to {self.directory} or register it in code"
            )
        return schema

    def find(self, fingerprint: bytes) -> Schema | None:
        """The schema version with this fingerprint, or None."""
        return self._by_fp.get(bytes(fingerprint))

    def by_fingerprint(self, fingerprint: bytes) -> Schema:
        """Any known version (current or historical); :class:`SchemaError` if unknown."""
        schema = self.find(fingerprint)
        if schema is None:
            raise SchemaError(self.unknown_fingerprint(bytes(fingerprint)))
        return schema

    def unknown_fingerprint(self, fingerprint: bytes) -> str:
        """Why no version has ``fingerprint``: the folders searched, and the fixes."""
        folders = ", ".join(str(f) for f in self.folders) or str(self.directory)
        app_hint = (
            "for a schema an app declares (a TypedDict, its own .avsc), read with the app "
            "(the CLI's --app module:attr); "
            if self.folders[1:] == [] and not self.in_code
            else ""
        )
        return (
            f"unknown writer schema fingerprint {fingerprint.hex()}: no current or archived "
            f"version under {folders} (each with its {HISTORY_DIR}/) has it; fix: {app_hint}"
            f"for an older version of a schema, restore its snapshot in the {HISTORY_DIR}/ "
            "beside its .avsc (run registry.archive() before each change, so none goes "
            "missing); or the record is corrupt"
        )

    def names(self) -> list[str]:
        """The names of the current schemas, sorted."""
        return sorted(self._current)

    def versions(self, name: str) -> list[Schema]:
        """Every known version of ``name`` (the current one first, if any)."""
        current = self._current.get(name)
        older = [s for s in self._by_fp.values() if s.name == name and s is not current]
        return ([current] if current else []) + older

    # -- changes ------------------------------------------------------------

    def register(self, raw: dict[str, Any], *, current: bool = True) -> Schema:
        """Add a schema defined in code; it may name any current type.

        With ``current=False`` it is only an older version (found by fingerprint).
        Re-registering an identical schema is a no-op; a different definition of
        a current name is a :class:`SchemaError`.
        """
        name = _top_name(raw, "registered schema")
        schema = Schema.from_raw(_expand(raw, "", self._definitions, set()))
        old = self._current.get(name) if current else None
        if old is not None and old.fingerprint == schema.fingerprint:
            return old
        if old is not None:
            raise SchemaError(
                f"schema {name} is already registered with another definition "
                f"({old.fingerprint_hex}, got {schema.fingerprint_hex}); fix: rename it, "
                "or pass current=False to add it as an older version"
            )
        if current:
            self._definitions[name] = raw
            self.in_code.append(name)
        self._add(schema, current=current)
        return schema

    def archive(self, *, skip: Sequence[Path] = ()) -> list[Path]:
        """Write a history snapshot of every current schema that lacks one; return the new files.

        Each goes to the ``history/`` of the folder it was read from (schemas
        registered in code have none, and are skipped; so are those of the
        folders in ``skip``). A snapshot appears whole or not at all: workers
        starting together may write the same one.
        """
        written = []
        skipped = {Path(folder).resolve() for folder in skip}
        for name in self.names():
            schema = self._current[name]
            folder = self._origins.get(name)
            if folder is None or folder.resolve() in skipped:
                continue
            history = folder / HISTORY_DIR
            path = history / f"{name}.{schema.fingerprint_hex}.avsc"
            if not path.exists():
                history.mkdir(parents=True, exist_ok=True)
                partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
                partial.write_text(json.dumps(schema.raw, indent=2) + "\n")
                os.replace(partial, path)
                written.append(path)
        return written

    # -- loading ------------------------------------------------------------

    def _load(self) -> None:
        if not self.directory.is_dir():
            raise SchemaError(
                f"schemas directory {self.directory} not found: expected a folder of .avsc "
                "files; fix: set ALTO_SCHEMAS_DIR or pass the directory"
            )
        self.add_directory(self.directory)

    def add_directory(self, directory: Path, *, only: list[Path] | None = None) -> list[str]:
        """Load ``directory``'s ``*.avsc`` (or just ``only``) and its ``history/``; say the names.

        Its schemas may name each other and any type already known. A name that
        is already current with another definition is a :class:`SchemaError`.
        """
        if directory not in self.folders:
            self.folders.append(directory)
        raws: dict[str, dict[str, Any]] = {}
        for path in only if only is not None else sorted(directory.glob("*.avsc")):
            raw = _read_json(path)
            name = _top_name(raw, str(path))
            if name != path.name.removesuffix(".avsc"):
                raise SchemaError(
                    f"{path}: defines {name!r} but the file name says otherwise; "
                    f"fix: rename the file to {name}.avsc"
                )
            raws[name] = raw
        inline = self._inline_definitions(directory, raws)
        known = {**self._definitions, **inline, **raws}
        schemas = []
        for name, raw in raws.items():
            # A file's own inline types are defined where it writes them (Avro's order).
            own = {n: known[n] for n in _inline_types(raw) if n not in raws}
            visible = {n: d for n, d in known.items() if n not in own}
            try:
                schemas.append(Schema.from_raw(_expand(raw, "", visible, set())))
            except SchemaError as exc:  # name the file: the message names the field
                raise SchemaError(f"{directory / (name + '.avsc')}: {exc}") from exc
        for schema in schemas:
            old = self._current.get(schema.name)
            if old is not None and old.fingerprint != schema.fingerprint:
                raise SchemaError(
                    f"{directory / (schema.name + '.avsc')}: defines {schema.name} "
                    f"({schema.fingerprint_hex}), already known with another definition "
                    f"({old.fingerprint_hex}); fix: rename the type (give it your own namespace)"
                )
        self._definitions.update(inline)
        self._definitions.update(raws)
        for schema in schemas:
            self._origins.setdefault(schema.name, directory)
            self._add(schema, current=True)
        snapshots = [
            self._load_snapshot(path) for path in sorted((directory / HISTORY_DIR).glob("*.avsc"))
        ]
        self._check_history(directory, list(raws), snapshots)
        return list(raws)

    def _inline_definitions(
        self, directory: Path, raws: Mapping[str, dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        """The named types ``raws`` define inline (a field's enum), for the other files to name.

        As in plain Avro, a named type defined once may be named anywhere after:
        here in any file of the folder, whatever the files' order. One name defined
        twice differently (inline, in a file of its own, or known already) is a
        :class:`SchemaError` naming both places.
        """
        found: dict[str, dict[str, Any]] = {}
        where: dict[str, str] = {}
        for file, raw in raws.items():
            for name, definition in _inline_types(raw).items():
                place = f"inline in {directory / (file + '.avsc')}"
                other = raws.get(name, found.get(name, self._definitions.get(name)))
                if other is not None and _normal(other) != definition:
                    own_file = directory / (name + ".avsc")
                    elsewhere = (
                        str(own_file) if name in raws else where.get(name, "a schema known before")
                    )
                    raise SchemaError(
                        f"{name} is defined twice, differently: {place} and {elsewhere}; "
                        "fix: define it once (its own .avsc), and name it elsewhere"
                    )
                found.setdefault(name, definition)
                where.setdefault(name, place)
        return found

    def _check_history(
        self, directory: Path, names: list[str], snapshots: list[tuple[Path, Schema]]
    ) -> None:
        """Refuse a current version that cannot read an archived one; warn of one not archived.

        Without this, a field added without a default loads fine, and then every
        record written before is dead-lettered and aggregates fail to restore.
        """
        archived: dict[str, set[bytes]] = {}
        for path, old in snapshots:
            archived.setdefault(old.name, set()).add(old.fingerprint)
            current = self._current.get(old.name)
            if current is None or current.fingerprint == old.fingerprint:
                continue
            problem = avro_check.incompatibility(current.raw, old.raw)
            if problem is not None:
                fix = (
                    'give that field a "default"'
                    if "no default" in problem
                    else "change it back: evolve by adding fields with defaults, removing "
                    "fields, or promoting int -> long -> float -> double"
                )
                raise SchemaError(
                    f"{directory / (old.name + '.avsc')}: the current {old.name} cannot read "
                    f"records written with its archived version {old.fingerprint_hex} "
                    f"({HISTORY_DIR}/{path.name}): {problem}; fix: {fix} (or, when no record "
                    f"written with that version is kept anywhere, its topics deleted, delete "
                    f"{HISTORY_DIR}/{path.name})"
                )
        for name in names:
            current = self._current[name]
            if name in archived and current.fingerprint not in archived[name]:
                key = (str(directory), current.fingerprint)
                if key not in _WARNED:
                    _WARNED.add(key)
                    log.warning(
                        "%s: the current %s (%s) is not archived in %s/, older versions are: "
                        "records written with it become unreadable once it changes again; "
                        "fix: run app.registry.archive()",
                        directory / f"{name}.avsc",
                        name,
                        current.fingerprint_hex,
                        HISTORY_DIR,
                    )

    def copy(self) -> SchemaRegistry:
        """A registry with the same schemas, to extend without changing this one."""
        twin = object.__new__(SchemaRegistry)
        twin.directory = self.directory
        twin._current = dict(self._current)
        twin._by_fp = dict(self._by_fp)
        twin._definitions = dict(self._definitions)
        twin._origins = dict(self._origins)
        twin.folders = list(self.folders)
        twin.in_code = list(self.in_code)
        return twin

    def _load_snapshot(self, path: Path) -> tuple[Path, Schema]:
        name, _, fp_hex = path.name.removesuffix(".avsc").rpartition(".")
        # A snapshot is self-contained: it must not pick up today's version of a type it names.
        schema = Schema.from_raw(_expand(_read_json(path), "", {}, set()))
        if (schema.name, schema.fingerprint_hex) != (name, fp_hex):
            raise SchemaError(
                f"{path}: holds {schema.name} with fingerprint {schema.fingerprint_hex}, but its "
                f"name says {name} {fp_hex}; snapshots are immutable: fix: restore the file"
            )
        self._add(schema, current=False)
        return path, schema

    def _add(self, schema: Schema, *, current: bool) -> None:
        if current:
            self._current[schema.name] = schema
            self._by_fp[schema.fingerprint] = schema
        else:
            self._by_fp.setdefault(schema.fingerprint, schema)


class Codec:
    """Encodes values with the current version of a schema; decodes any known version."""

    def __init__(self, registry: SchemaRegistry | None = None) -> None:
        self.registry = registry if registry is not None else SchemaRegistry()

    def encode(self, name: str, value: Mapping[str, Any]) -> bytes:
        """Avro binary of ``value`` (no header); :class:`SchemaError` names a misfit field."""
        schema = self.registry._current.get(name) or self.registry.get(name)
        return self._write(schema, value)

    def encode_single(self, name: str, value: Mapping[str, Any]) -> bytes:
        """Avro single-object encoding: ``C3 01``, the writer's 8-byte fingerprint, the body."""
        schema = self.registry.get(name)
        return SINGLE_OBJECT_MAGIC + schema.fingerprint + self._write(schema, value)

    def decode(
        self,
        data: bytes,
        writer_fingerprint: bytes,
        reader_name: str | None = None,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> dict[str, Any]:
        """Read ``data`` written with the schema of ``writer_fingerprint`` as ``reader_name``.

        The reader defaults to the current version of the writer's schema. Every
        failure (unknown fingerprint, corrupt or truncated bytes, incompatible
        schemas) is a :class:`DecodeError` carrying topic, partition and offset.
        """
        writer = (
            self.registry._by_fp.get(writer_fingerprint)
            if type(writer_fingerprint) is bytes
            else None
        )
        # The common case first: the current version, read by its compiled reader.
        if writer is not None and self.registry._current.get(reader_name or writer.name) is writer:
            value = _read_compiled(writer, data, 0)
            if value is not None:
                return value
        where = _Where(topic, partition, offset)
        writer, reader = self._resolve(writer_fingerprint, reader_name, where)
        return self._read(data, 0, writer, reader, where)

    def decode_single(
        self,
        data: bytes,
        reader_name: str | None = None,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> dict[str, Any]:
        """Read an Avro single-object encoding (see :meth:`encode_single`)."""
        where = _Where(topic, partition, offset)
        if not isinstance(data, _BYTES) or len(data) < _HEADER_LEN:
            raise where.error(
                f"expected an Avro single-object encoding (at least {_HEADER_LEN} bytes), "
                f"got {_short(data)}"
            )
        if data[:2] != SINGLE_OBJECT_MAGIC:
            raise where.error(
                f"expected an Avro single-object encoding starting with c301, "
                f"got {bytes(data[:2]).hex()}"
            )
        writer, reader = self._resolve(data[2:_HEADER_LEN], reader_name, where)
        return self._read(data, _HEADER_LEN, writer, reader, where)

    # -- internals ----------------------------------------------------------

    def _write(self, schema: Schema, value: Mapping[str, Any]) -> bytes:
        if schema.write_fast is not None:
            try:
                return schema.write_fast(value)
            except avro_fast.MisfitError:
                pass  # an int for a double, a default left out...: checked, then fastavro's
        # fastavro's writer casts what it is given (1.5 or True for a long is written as 1):
        # a value that does not fit exactly is refused here, in words that name the field.
        check = schema.misfit or avro_check.ValueCheck(schema.raw)
        problem = check(value)
        if problem is not None:
            raise SchemaError(_misfit_message(schema, problem))
        buf = BytesIO()
        try:
            fastavro.schemaless_writer(buf, schema.parsed, value, strict_allow_default=True)
        except _ENCODE_ERRORS as exc:
            raise SchemaError(_explain(schema, value, exc)) from exc
        return buf.getvalue()

    def _resolve(
        self, writer_fingerprint: bytes, reader_name: str | None, where: _Where
    ) -> tuple[Schema, Schema]:
        if not isinstance(writer_fingerprint, _BYTES):
            raise where.error(f"expected an 8-byte fingerprint, got {_short(writer_fingerprint)}")
        writer = self.registry._by_fp.get(bytes(writer_fingerprint))
        if writer is None:
            raise where.error(self.registry.unknown_fingerprint(bytes(writer_fingerprint)))
        if reader_name is None:
            return writer, self.registry._current.get(writer.name, writer)
        reader = self.registry._current.get(reader_name)
        if reader is None:
            raise where.error(
                f"unknown reader schema {reader_name!r}: expected one of "
                f"{', '.join(self.registry.names())}"
            )
        return writer, reader

    def _read(
        self, data: bytes, start: int, writer: Schema, reader: Schema, where: _Where
    ) -> dict[str, Any]:
        if reader is writer:
            compiled = _read_compiled(writer, data, start)
            if compiled is not None:
                return compiled
        try:
            buf = BytesIO(data)
            if start:
                buf.seek(start)
            reader_parsed = None if reader is writer else reader.parsed
            value = fastavro.schemaless_reader(buf, writer.parsed, reader_parsed)
            end, size = buf.tell(), len(data)
        except SchemaResolutionError as exc:
            if writer.name != reader.name:
                # fastavro's text is both parsed schemas, kilobytes of dicts: say it plainly.
                problem, fix = (
                    "Avro matches records by name",
                    f"write {reader.name} records here, or read this topic as {writer.name}",
                )
            else:
                problem = _short(str(exc), 300, quote=False)
                fix = "evolve schemas the Avro way (add fields with defaults, remove fields)"
            raise where.error(
                f"cannot read {writer.name} {writer.fingerprint_hex} as {reader.name} "
                f"{reader.fingerprint_hex}: {problem}; fix: {fix}"
            ) from exc
        except Exception as exc:  # corrupt input makes fastavro raise almost any type
            raise where.error(
                f"corrupt or truncated {writer.name} record ({type(exc).__name__}: {exc}): "
                f"expected Avro binary written with {writer.name} {writer.fingerprint_hex}"
            ) from exc
        if end != size:
            raise where.error(
                f"{size - end} trailing bytes after a {writer.name} record: expected exactly "
                "one record (corrupt data, or a wrong fingerprint header)"
            )
        if not isinstance(value, dict):
            raise where.error(f"schema {writer.name} is not a record: got {_short(value)}")
        return value


def _read_compiled(schema: Schema, data: bytes, start: int) -> dict[str, Any] | None:
    """The record in ``data`` read by ``schema``'s compiled reader; None: ask fastavro.

    None also for bytes it cannot read or that leave bytes over: fastavro then
    reads them, or says what is wrong with them.
    """
    if schema.read_fast is None or type(data) is not bytes:
        return None
    try:
        value, end = schema.read_fast(data, start)
    except avro_fast.READ_ERRORS:
        return None
    return value if end == len(data) else None


@dataclass(slots=True)  # not frozen: built for every decoded record, a plain __init__ is cheaper
class _Where:
    topic: str | None
    partition: int | None
    offset: int | None

    def error(self, message: str) -> DecodeError:
        return DecodeError(message, topic=self.topic, partition=self.partition, offset=self.offset)


# -- schema JSON helpers ------------------------------------------------------


def _fullname(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _short(value: object, limit: int = 120, *, quote: bool = True) -> str:
    text = repr(value) if quote else str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _read_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SchemaError(f"{path}: cannot read an Avro schema: {exc}") from exc
    if not isinstance(raw, dict):
        raise SchemaError(f"{path}: expected a JSON object (a named schema), got {_short(raw)}")
    return raw


def _top_name(raw: dict[str, Any], origin: str) -> str:
    name = raw.get("name")
    if raw.get("type") not in _NAMED or not isinstance(name, str) or not name:
        raise SchemaError(
            f"{origin}: expected a named schema (record, enum or fixed with a name), "
            f"got {_short(raw)}"
        )
    return _fullname(name, str(raw.get("namespace", "")))


def _expand(
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
        if schema in _PRIMITIVES:
            return schema
        full = _fullname(schema, namespace)
        if full in done:
            return full
        if full not in known:
            raise SchemaError(_unknown_type(schema, full, field, known))
        return _expand(known[full], "", known, done)
    if isinstance(schema, list):
        return [_expand(branch, namespace, known, done, field) for branch in schema]
    if not isinstance(schema, dict):
        raise SchemaError(f"expected an Avro schema (name, list or object), got {_short(schema)}")
    kind = schema.get("type")
    out = dict(schema)
    if kind in _NAMED:
        full = _fullname(str(schema.get("name")), str(schema.get("namespace", namespace)))
        if full in done:
            raise SchemaError(f"{full} is defined twice in one schema: expected one definition")
        done.add(full)
        out["name"] = full
        out.pop("namespace", None)
        inner = full.rpartition(".")[0]
        if "fields" in schema:
            out["fields"] = [
                {**f, "type": _expand(f.get("type"), inner, known, done, f"{full}.{f.get('name')}")}
                if isinstance(f, dict)
                else f
                for f in schema["fields"]
            ]
    elif kind == "array":
        out["items"] = _expand(schema.get("items"), namespace, known, done, field)
    elif kind == "map":
        out["values"] = _expand(schema.get("values"), namespace, known, done, field)
    elif isinstance(kind, dict | list) or (isinstance(kind, str) and kind not in _PRIMITIVES):
        return _expand(kind, namespace, known, done, field)
    return out


def _inline_types(schema: Any, namespace: str = "") -> dict[str, dict[str, Any]]:
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
        if kind in _NAMED and isinstance(node.get("name"), str):
            full = _fullname(node["name"], str(node.get("namespace", space)))
            if not top:
                found.setdefault(full, _normal(node, space))
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


def _normal(definition: dict[str, Any], namespace: str = "") -> dict[str, Any]:
    """``definition`` of a named type with its full name and no namespace."""
    full = _fullname(str(definition.get("name")), str(definition.get("namespace", namespace)))
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
        for name in difflib.get_close_matches(written, sorted(_PRIMITIVES) + names, n=3)
        + difflib.get_close_matches(full, names, n=3)
        if difflib.SequenceMatcher(None, short, name.rpartition(".")[2]).ratio() >= 0.6
    ]
    where = f"field {field} has " if field else ""
    if close:
        fix = f'did you mean {close[0]!r}? fix: write "type": "{close[0]}" (or add {full}.avsc)'
    else:
        fix = f"fix: add {full}.avsc, or use a primitive ({', '.join(sorted(_PRIMITIVES))})"
    return (
        f"{where}unknown type {full!r}: expected a primitive or a named type of the registry; {fix}"
    )


def _explain(schema: Schema, value: Mapping[str, Any], exc: Exception) -> str:
    """Why fastavro refused ``value`` (that :func:`avro_check.misfit` passed), in one line."""
    return _misfit_message(schema, f"{type(exc).__name__}: {_short(str(exc), 200, quote=False)}")


def _misfit_message(schema: Schema, problem: str) -> str:
    return (
        f"value does not fit schema {schema.name}: {problem}; "
        f"fix: make the value match {schema.name} (see its .avsc)"
    )
