"""Resolving app references: module:attr, module, factories, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from alto_stream.app import App
from alto_stream.errors import ConfigError
from alto_stream.ops.loading import load_app, load_topology


def test_module_and_attribute() -> None:
    app = load_app("workers.textflow:app")
    assert isinstance(app, App)
    assert app.name == "textflow"


def test_module_alone_means_attribute_app() -> None:
    assert load_app("workers.textflow") is load_app("workers.textflow:app")


def test_a_factory_is_called() -> None:
    app = load_app("workers.textflow:build")
    assert app.name == "textflow"
    assert app is not load_app("workers.textflow:app")


def test_load_topology_checks_the_app() -> None:
    app, topology = load_topology("workers.textflow:app")
    assert topology.app == app.name
    assert "shout" in topology.stages


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("no_such_module_xyz:app", "no module named 'no_such_module_xyz'"),
        ("workers.no_such:app", "no module named 'workers.no_such'"),
        ("workers.textflow:nothing", "apps in that module: app"),
        ("workers.textflow:reference", "expected an App"),
        ("not a ref", "bad app reference"),
        (":app", "bad app reference"),
    ],
)
def test_unknown_apps_are_config_errors(ref: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_app(ref)
    assert message in str(caught.value)


def test_a_broken_module_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_app_mod.py").write_text("import missing_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="failed to import: No module named"):
        load_app("broken_app_mod:app")


def test_a_factory_call_with_literal_arguments() -> None:
    app = load_app("workers.textflow:build('tf-cli-1', word_delay=0.5)")
    assert app.name == "tf-cli-1"
    with pytest.raises(ConfigError, match="literal arguments only"):
        load_app("workers.textflow:build(open('x'))")
    with pytest.raises(ConfigError, match=r"app factory .* failed: TypeError"):
        load_app("workers.textflow:build(1, 2, 3)")


def test_an_app_named_without_its_package_gets_the_ref_to_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A new user typed `alto-stream topics apply textflow` in the project root.
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    with pytest.raises(ConfigError) as caught:
        load_app("textflow")
    assert "fix: did you mean 'workers.textflow:app'?" in str(caught.value)
