"""Where an app's topic file is read from, and which folders count as a checkout's.

Found by a new user who installed alto-stream with pip: ``topics/<app>.toml``
beside the app's module was ignored without a word (only the checkout's or the
package's ``topics/`` were read), and an empty ``schemas/`` folder at the top of
site-packages hid every built-in schema.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from alto_stream import App, settings
from alto_stream.ops.topics import app_topic_specs
from alto_stream.topics import topic_file_path

MODULE = """
from alto_stream import App

app = App("lookup_app", input_schema="alto.Text")


@app.map(source=app.input, schema="alto.Text")
def same(value):
    return value
"""


def _app(folder: Path) -> App:
    (folder / "lookup_mod.py").write_text(MODULE)
    spec = importlib.util.spec_from_file_location("lookup_mod", folder / "lookup_mod.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app: App = module.app
    return app


def _partitions(app: App) -> set[int]:
    specs = app_topic_specs(app.topology(), app_home=app.folder)
    return {s.partitions for s in specs}


def test_the_file_beside_the_apps_module_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(settings.TOPICS_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # nothing in the current folder
    home = tmp_path / "app"
    (home / "topics").mkdir(parents=True)
    (home / "topics" / "lookup_app.toml").write_text("[defaults]\npartitions = 5\n")
    app = _app(home)
    assert app.folder == home.resolve()
    assert topic_file_path("lookup_app", app.folder) == home.resolve() / "topics/lookup_app.toml"
    assert _partitions(app) == {5}


def test_then_the_current_folder_and_alto_topics_dir_alone_when_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(settings.TOPICS_DIR_ENV, raising=False)
    app = _app(tmp_path)
    work = tmp_path / "work"
    (work / "topics").mkdir(parents=True)
    (work / "topics" / "lookup_app.toml").write_text("[defaults]\npartitions = 6\n")
    monkeypatch.chdir(work)
    assert _partitions(app) == {6}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "lookup_app.toml").write_text("[defaults]\npartitions = 7\n")
    monkeypatch.setenv(settings.TOPICS_DIR_ENV, str(elsewhere))
    assert _partitions(app) == {7}
    (elsewhere / "lookup_app.toml").unlink()  # set, without the file: the defaults
    assert topic_file_path("lookup_app", app.folder) == elsewhere / "lookup_app.toml"
    assert _partitions(app) == {3}


def test_a_schemas_folder_above_an_installed_package_is_not_a_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site-packages"
    package = site / "alto_stream"
    (package / "_schemas").mkdir(parents=True)
    (site / "schemas").mkdir()  # some other distribution's top-level folder
    (site / "topics").mkdir()
    monkeypatch.setattr(settings, "_PACKAGE", package)
    monkeypatch.delenv("ALTO_SCHEMAS_DIR", raising=False)
    monkeypatch.delenv(settings.TOPICS_DIR_ENV, raising=False)
    assert settings.schemas_dir() == package / "_schemas"
    assert settings.topics_dir() == package / "_topics"
    assert settings.project_root() == package
    (site / "pyproject.toml").write_text("[project]\nname = 'alto-stream'\n")  # a checkout
    assert settings.schemas_dir() == site / "schemas"
    assert settings.topics_dir() == site / "topics"


def test_topics_apply_says_which_file_it_read_or_which_folder_lacks_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alto_stream.cli.topics_cmd import _settings_line

    monkeypatch.delenv(settings.TOPICS_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "app"
    home.mkdir()
    assert _settings_line("lookup_app", home) is None  # no topic files anywhere near: quiet
    (home / "topics").mkdir()
    (home / "topics" / "other.toml").write_text("[defaults]\npartitions = 2\n")
    assert _settings_line("lookup_app", home) == (
        f"no topic file lookup_app.toml in {home / 'topics'}: the defaults"
    )
    (home / "topics" / "lookup_app.toml").write_text("[defaults]\npartitions = 5\n")
    assert _settings_line("lookup_app", home) == (
        f"topic settings from {home / 'topics' / 'lookup_app.toml'}"
    )
