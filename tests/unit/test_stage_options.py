"""Stage options are spelled-out, typed parameters: unknown ones fail where they are written."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from alto_stream import App, Child
from alto_stream.errors import ConfigError, RetriableError

KINDS = ("map", "split", "batch", "aggregate")


def _app() -> tuple[App, Any]:
    app = App("opts", input_schema="alto.Text")

    @app.split(source=app.input, schema="alto.Text")
    async def parts(q: dict[str, Any]) -> list[dict[str, Any]]:
        return [q]

    return app, parts


def _decorator(app: App, kind: str, parts: Any, **options: Any) -> Any:
    common: dict[str, Any] = {"source": parts, "schema": "alto.Text", **options}
    if kind == "aggregate":
        common["closes"] = parts
    return getattr(app, kind)(**common)


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_option_is_a_type_error_at_decoration(kind: str) -> None:
    app, parts = _app()
    with pytest.raises(TypeError, match="max_inflight"):
        _decorator(app, kind, parts, max_inflight=3)  # a typo of max_in_flight
    assert set(app.stages) == {"parts"}


@pytest.mark.parametrize("kind", KINDS)
def test_every_option_is_a_named_keyword_parameter(kind: str) -> None:
    params = inspect.signature(getattr(App, kind)).parameters
    assert not any(p.kind is p.VAR_KEYWORD for p in params.values())
    assert all(p.kind is p.KEYWORD_ONLY for name, p in params.items() if name != "self")
    common = {"name", "accepts", "max_in_flight", "retries", "retry_backoff", "retry_on"}
    assert common <= set(params)
    assert all(p.annotation is not p.empty for p in params.values() if p.name != "self")
    doc = inspect.getdoc(getattr(App, kind)) or ""
    assert doc  # documented (map spells each parameter out; the others refer to it)
    if kind == "map":
        for name in common:
            assert f"{name}:" in doc, name


def test_options_reach_the_stage() -> None:
    app, parts = _app()

    @app.batch(source=parts, schema="alto.Text", size=8, wait=0.5, name="emb", max_in_flight=5)
    async def embed(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return values

    @app.map(source=embed, schema="alto.Text", retries=2, retry_on=KeyError, retry_backoff=0.5)
    async def look(v: dict[str, Any]) -> dict[str, Any]:
        return v

    @app.aggregate(source=look, closes=parts, schema="alto.Text", timeout=4.0, accepts="alto.Text")
    async def join(children: list[Child]) -> dict[str, Any]:
        return {"text": ""}

    stages = app.stages
    emb = stages["emb"]
    assert (emb.batch_size, emb.batch_wait, emb.max_in_flight) == (8, 0.5, 5)
    assert (stages["look"].retries, stages["look"].retry_on) == (2, (KeyError,))
    assert stages["look"].retry_backoff == 0.5
    assert (stages["join"].timeout, stages["join"].accepts) == (4.0, "alto.Text")
    app.topology()


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("map", {"max_in_flight": 0}, "max_in_flight"),
        ("split", {"retries": -1}, "retries"),
        ("map", {"retry_on": ValueError("x")}, "retry_on takes exception types"),
        ("batch", {"size": 0}, "size"),
        ("aggregate", {"timeout": 0.0}, "timeout"),
    ],
)
def test_bad_option_values_are_config_errors(
    kind: str, options: dict[str, Any], message: str
) -> None:
    app, parts = _app()
    with pytest.raises(ConfigError, match=message):
        _decorator(app, kind, parts, **options)


def test_retry_on_takes_a_type_or_a_tuple() -> None:
    app, parts = _app()

    @app.map(source=parts, schema="alto.Text", retry_on=(KeyError, RetriableError))
    async def one(v: dict[str, Any]) -> dict[str, Any]:
        return v

    assert app.stages["one"].retry_on == (KeyError, RetriableError)
