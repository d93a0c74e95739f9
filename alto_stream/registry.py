"""The schema registry: every Avro schema a process knows, loaded from ``.avsc`` folders.

Schemas live as ``.avsc`` files, one per named type, the file named after the
type's full name (``schemas/alto.Text.avsc``). A schema may name types defined
in other files (a type that other files name needs its own file); the registry
inlines them (:mod:`alto_stream.avro_names`), so every :class:`Schema` is
self-contained and its fingerprint (CRC-64-AVRO of the parsing canonical form)
is the one any Avro implementation computes.

Evolution: a record names its writer schema by fingerprint; the reader resolves
it to the current version of that schema (fields added with defaults, fields
removed: the Avro rules). Older versions stay readable because every version
ever released is kept, self-contained, in ``schemas/history/<name>.<fp>.avsc``;
:meth:`SchemaRegistry.archive` writes the snapshot of each current schema, and a
test fails while one is missing. Loading refuses a current version that cannot
read an archived one.

>>> registry = SchemaRegistry()
>>> registry.get("alto.Text").raw["fields"]
[{'name': 'text', 'type': 'string'}]
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from alto_stream import avro_check, settings
from alto_stream.avro_names import expand, inline_types, normal, top_name
from alto_stream.errors import SchemaError
from alto_stream.schema import Schema

__all__ = ["HISTORY_DIR", "SchemaRegistry"]

# The name it had before the registry left alto_stream.codec: logging set up for it still works.
log = logging.getLogger("alto_stream.codec")

HISTORY_DIR = "history"
"""The subfolder of the schemas directory that keeps every released version."""

_WARNED: set[tuple[str, bytes]] = set()  # (folder, fingerprint) said not archived, once each


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
        name = top_name(raw, "registered schema")
        schema = Schema.from_raw(expand(raw, "", self._definitions, set()))
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
            name = top_name(raw, str(path))
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
            own = {n: known[n] for n in inline_types(raw) if n not in raws}
            visible = {n: d for n, d in known.items() if n not in own}
            try:
                schemas.append(Schema.from_raw(expand(raw, "", visible, set())))
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
            for name, definition in inline_types(raw).items():
                place = f"inline in {directory / (file + '.avsc')}"
                other = raws.get(name, found.get(name, self._definitions.get(name)))
                if other is not None and normal(other) != definition:
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
        schema = Schema.from_raw(expand(_read_json(path), "", {}, set()))
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


def _read_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SchemaError(f"{path}: cannot read an Avro schema: {exc}") from exc
    if not isinstance(raw, dict):
        raise SchemaError(f"{path}: expected a JSON object (a named schema), got {_short(raw)}")
    return raw


def _short(value: object, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
