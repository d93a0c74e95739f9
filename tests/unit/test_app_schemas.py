"""An app brings its own schemas: folders, files, dicts, dataclasses and TypedDicts."""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
import textwrap
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import pytest

from alto_stream import App, Child
from alto_stream.ancestry import Ancestry
from alto_stream.app_schemas import schema_name, schema_of
from alto_stream.codec import SINGLE_OBJECT_MAGIC, Codec
from alto_stream.errors import DecodeError, SchemaError, TopologyError
from alto_stream.message import Envelope, MessageCodec
from alto_stream.ops.loading import keep_schema_versions, load_app
from alto_stream.runner import run_in_memory

pytestmark = pytest.mark.timeout(60)

THING = {
    "type": "record",
    "name": "Thing",
    "namespace": "my",
    "fields": [
        {"name": "title", "type": "string"},
        {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
        {"name": "source", "type": "alto.Text"},  # a built-in type, named
    ],
}


class Note(TypedDict):
    text: str
    weight: float
    votes: NotRequired[int]


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Inner:
    n: int


@dataclasses.dataclass
class Card:
    title: str
    inner: Inner
    colour: Colour = Colour.RED
    note: str | None = None
    scores: list[float] = dataclasses.field(default_factory=list)
    extra: dict[str, bytes] = dataclasses.field(default_factory=dict)


def _one_stage(app: App, schema: Any) -> None:
    @app.map(source=app.input, schema=schema)
    def make(q: dict[str, Any]) -> dict[str, Any]:
        return q


def test_unknown_schema_name_fails_at_topology_naming_it() -> None:
    app = App("typo", input_schema="alto.Text")
    _one_stage(app, "my.Thing")
    with pytest.raises(TopologyError, match=r"stage 'make' names schema 'my.Thing', which is unk"):
        app.topology()


def test_unknown_input_and_accepts_schemas_fail_at_topology() -> None:
    app = App("typo-in", input_schema="alto.Txt")
    _one_stage(app, "alto.Text")
    with pytest.raises(TopologyError, match=r"the app's input names schema 'alto.Txt'"):
        app.topology()
    app2 = App("typo-acc", input_schema="alto.Text")

    @app2.map(source=app2.input, schema="alto.Text", accepts="alto.Txt")
    def same(q: dict[str, Any]) -> dict[str, Any]:
        return q

    with pytest.raises(TopologyError, match="accepts"):
        app2.topology()


def test_a_schema_dict_is_known_alongside_the_builtins() -> None:
    app = App("dicts", input_schema="alto.Text", schemas=[THING])
    _one_stage(app, "my.Thing")
    topology = app.topology()
    assert {"my.Thing", "alto.Text", "alto.Query"} <= set(topology.registry.names())  # type: ignore[union-attr]
    codec = topology.codec()
    value = {"title": "t", "tags": ["a"], "source": {"text": "s"}}
    env = Envelope(Ancestry.root("q", query_time=0.0), value, "my.Thing", "make")
    assert codec.decode(*codec.encode(env)) == env


def test_a_folder_beside_the_app_module_is_found_by_workers_loading_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "my.Thing.avsc").write_text(json.dumps(THING))
    module = tmp_path / "app_with_schemas_mod.py"
    module.write_text(
        textwrap.dedent(
            """
            from alto_stream import App
            app = App("own", input_schema="alto.Text", schemas=["schemas"])

            @app.map(source=app.input, schema="my.Thing")
            def make(q):
                return {"title": q["text"], "tags": [], "source": q}
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)  # relative to the module's folder, not the current one
    try:
        app = load_app("app_with_schemas_mod:app")
        assert "my.Thing" in app.topology().registry.names()  # type: ignore[union-attr]
    finally:
        sys.modules.pop("app_with_schemas_mod", None)


def test_a_single_avsc_file_and_a_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "my.Thing.avsc"
    path.write_text(json.dumps(THING))
    app = App("file", input_schema="alto.Text", schemas=[path])
    _one_stage(app, "my.Thing")
    app.topology()
    bad = App("missing", input_schema="alto.Text", schemas=[tmp_path / "nope"])
    _one_stage(bad, "alto.Text")
    with pytest.raises(TopologyError, match=r"neither a folder of .avsc files nor an .avsc file"):
        bad.topology()


def test_redefining_a_builtin_is_refused(tmp_path: Path) -> None:
    (tmp_path / "alto.Text.avsc").write_text(
        json.dumps(
            {"type": "record", "name": "alto.Text", "fields": [{"name": "t", "type": "int"}]}
        )
    )
    app = App("clash", input_schema="alto.Text", schemas=[tmp_path])
    _one_stage(app, "alto.Text")
    with pytest.raises(TopologyError, match="already known with another definition"):
        app.topology()


def test_the_builtin_registry_is_not_changed_by_an_app() -> None:
    App("one", input_schema="alto.Text", schemas=[THING]).registry  # noqa: B018
    assert "my.Thing" not in App("two").registry.names()
    assert "my.Thing" not in Codec().registry.names()


def test_typed_dict_schema() -> None:
    assert schema_of(Note, name="my.Note") == {
        "type": "record",
        "name": "my.Note",
        "fields": [
            {"name": "text", "type": "string"},
            {"name": "weight", "type": "double"},
            {"name": "votes", "type": ["null", "long"], "default": None},
        ],
    }


def test_dataclass_schema_with_nested_types_and_defaults() -> None:
    raw = schema_of(Card, name="my.Card")
    fields = {f["name"]: f for f in raw["fields"]}
    assert fields["inner"]["type"] == {
        "type": "record",
        "name": "my.Inner",
        "fields": [{"name": "n", "type": "long"}],
    }
    assert fields["colour"] == {
        "name": "colour",
        "type": {"type": "enum", "name": "my.Colour", "symbols": ["red", "blue"]},
        "default": "red",
    }
    assert fields["note"] == {"name": "note", "type": ["null", "string"], "default": None}
    assert fields["scores"]["type"] == {"type": "array", "items": "double"}
    assert fields["extra"]["type"] == {"type": "map", "values": "bytes"}


def test_a_bytes_default_of_a_dataclass_is_an_avro_default() -> None:
    @dataclasses.dataclass
    class Blob:
        title: str
        blob: bytes = b"\xff\x00"

    raw = schema_of(Blob, name="my.Blob")
    assert raw["fields"][1] == {"name": "blob", "type": "bytes", "default": "\u00ff\u0000"}
    codec = Codec(App("blobs", input_schema="alto.Text", schemas=[raw]).registry)
    fingerprint = codec.registry.get("my.Blob").fingerprint
    decoded = codec.decode(codec.encode("my.Blob", {"title": "t"}), fingerprint)
    assert decoded == {"title": "t", "blob": b"\xff\x00"}


def test_a_type_that_cannot_map_is_named() -> None:
    @dataclasses.dataclass
    class Odd:
        when: complex

    with pytest.raises(SchemaError, match=r"Odd.when"):
        schema_of(Odd)


async def test_an_app_with_derived_schemas_runs_end_to_end_in_memory() -> None:
    app = App("derived", input_schema=Note)

    @app.split(source=app.input, schema=Note)
    def words(note: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"text": w, "weight": note["weight"], "votes": None} for w in note["text"].split()]

    @app.aggregate(source=words, closes=words, schema=Card)
    async def card(children: list[Child]) -> Card:  # an instance: turned into a dict
        return Card(
            title=" ".join(c.value["text"] for c in children),
            inner=Inner(len(children)),
            colour=Colour.BLUE,
            scores=[c.value["weight"] for c in children],
        )

    topology = app.topology()
    assert topology.input_schema == schema_name(Note)
    assert topology.stages["card"].stage.schema == schema_name(Card)
    [result] = await run_in_memory(app, [{"text": "a b", "weight": 0.5}])
    assert result.value == {
        "title": "a b",
        "inner": {"n": 2},
        "colour": "blue",
        "note": None,
        "scores": [0.5, 0.5],
        "extra": {},
    }


def test_archive_writes_app_schemas_into_their_own_history(tmp_path: Path) -> None:
    (tmp_path / "my.Thing.avsc").write_text(json.dumps(THING))
    app = App("arch", input_schema="alto.Text", schemas=[tmp_path])
    written = app.registry.archive()
    assert [p.parent for p in written] == [tmp_path / "history"]
    assert written[0].name.startswith("my.Thing.")
    # An older version of the app's schema stays readable after it evolves.
    old = Codec(app.registry)
    data = old.encode("my.Thing", {"title": "t", "tags": [], "source": {"text": "s"}})
    fp = app.registry.get("my.Thing").fingerprint
    evolved = {**THING, "fields": [*THING["fields"], {"name": "n", "type": "long", "default": 7}]}
    (tmp_path / "my.Thing.avsc").write_text(json.dumps(evolved))
    later = App("arch2", input_schema="alto.Text", schemas=[tmp_path]).registry
    assert Codec(later).decode(data, fp)["n"] == 7


def test_a_field_added_without_a_default_is_refused_at_load_time(tmp_path: Path) -> None:
    # Before, topology() took it, and at run time every record written with the
    # archived version was dead-lettered and aggregates failed to restore.
    (tmp_path / "my.Thing.avsc").write_text(json.dumps(THING))
    App("v1", input_schema="alto.Text", schemas=[tmp_path]).registry.archive()
    evolved = {**THING, "fields": [*THING["fields"], {"name": "lang", "type": "string"}]}
    (tmp_path / "my.Thing.avsc").write_text(json.dumps(evolved))
    app = App("v2", input_schema="alto.Text", schemas=[tmp_path])
    _one_stage(app, "my.Thing")
    with pytest.raises(TopologyError) as info:
        app.topology()
    text = str(info.value)
    assert f"{tmp_path / 'my.Thing.avsc'}: the current my.Thing cannot read" in text
    assert "field my.Thing.lang (string) is new and has no default" in text
    assert 'fix: give that field a "default"' in text and "\n" not in text


def test_a_current_version_not_archived_beside_older_ones_is_warned_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "my.Thing.avsc").write_text(json.dumps(THING))
    App("w1", input_schema="alto.Text", schemas=[tmp_path]).registry.archive()
    evolved = {**THING, "fields": [*THING["fields"], {"name": "n", "type": "long", "default": 0}]}
    (tmp_path / "my.Thing.avsc").write_text(json.dumps(evolved))
    with caplog.at_level("WARNING", logger="alto_stream.codec"):
        App("w2", input_schema="alto.Text", schemas=[tmp_path]).registry  # noqa: B018
        App("w3", input_schema="alto.Text", schemas=[tmp_path]).registry  # noqa: B018
    said = [r.getMessage() for r in caplog.records if "is not archived" in r.getMessage()]
    assert len(said) == 1 and "app.registry.archive()" in said[0]


def test_an_unknown_fingerprint_names_the_folders_searched_and_where(tmp_path: Path) -> None:
    # Before: 'expected a version known under <built-in schemas>; fix: ... read with
    # the app (the CLI's --app module:attr)' from inside the app's own worker.
    (tmp_path / "my.Thing.avsc").write_text(json.dumps(THING))
    codec = Codec(App("fp", input_schema="alto.Text", schemas=[tmp_path]).registry)
    with pytest.raises(DecodeError) as info:
        codec.decode(b"\x02x", b"\x32" * 8, topic="fp.g2", partition=1, offset=7)
    text = str(info.value)
    assert str(tmp_path) in text and str(Codec().registry.directory) in text
    assert "--app" not in text and text.endswith("(at fp.g2[1]@7)")
    # A registry of the built-ins only (tail without --app): the --app hint stays.
    with pytest.raises(DecodeError, match="--app module:attr"):
        Codec().decode(b"\x02x", b"\x32" * 8)


def test_an_unreadable_context_header_says_what_and_where() -> None:
    codec = MessageCodec()
    raw = SINGLE_OBJECT_MAGIC + b"\x32" * 8 + b"\x02x"
    with pytest.raises(DecodeError) as info:
        codec.decode_context(raw, topic="a.g3", partition=0, offset=12)
    text = str(info.value)
    assert text.startswith("the alto.context header of a split's end marker: unknown writer")
    assert text.endswith("(at a.g3[0]@12)") and text.count("(at ") == 1


def test_workers_keep_each_version_of_the_apps_own_schemas(tmp_path: Path) -> None:
    # What workers, push and topics apply call as they start (since 2026-12-03).
    (tmp_path / "my.Thing.avsc").write_text(json.dumps(THING))
    app = App("keep", input_schema="alto.Text", schemas=[tmp_path])
    written = keep_schema_versions(app)
    assert [Path(p).parent for p in written] == [tmp_path / "history"]  # no built-in one
    assert keep_schema_versions(app) == []  # kept already
    assert not list((tmp_path / "history").glob(".*"))  # no partial file left


def test_a_folder_that_cannot_be_written_is_said_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "my.Thing.avsc").write_text(json.dumps(THING))
    (tmp_path / "history").write_text("a file where the folder would go")
    app = App("readonly", input_schema="alto.Text", schemas=[tmp_path])
    with caplog.at_level("WARNING", logger="alto_stream.ops.loading"):
        assert keep_schema_versions(app) == []
    assert any("could not keep a snapshot" in r.getMessage() for r in caplog.records)
