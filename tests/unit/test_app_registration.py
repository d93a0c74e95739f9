"""Mistakes in registering stages are told where the decorator is written, with the fix.

Found by new users: each of these passed, or failed with Python's words, until
the first record (or `topics apply`).
"""

from __future__ import annotations

from typing import Any

import pytest

from alto_stream import App
from alto_stream.errors import ConfigError

SOURCE: dict[str, Any] = {"schema": "alto.Text"}


@pytest.mark.parametrize("kind", ["map", "split", "batch"])
def test_a_handler_that_takes_no_record_is_refused_at_registration(kind: str) -> None:
    # Before: registered fine, then every record was dead-lettered with a TypeError.
    app = App("arity", input_schema="alto.Text")
    decorate = getattr(app, kind)(source=app.input, **SOURCE)

    def none() -> None: ...

    def two(value: Any, other: Any) -> None: ...

    def keyword(value: Any, *, extra: Any) -> None: ...

    for handler in (none, two, keyword):
        with pytest.raises(
            ConfigError, match=rf"{kind} '{handler.__name__}': {handler.__name__}\("
        ):
            decorate(handler)
    with pytest.raises(ConfigError, match=r"one required positional parameter"):
        decorate(none)

    def fine(value: Any, extra: int = 1, *more: Any, flag: bool = False) -> Any: ...

    decorate(fine)
    getattr(app, kind)(source=app.input, name="star", **SOURCE)(lambda *values: values)


def test_a_decorator_without_parentheses_says_what_to_write() -> None:
    app = App("bare", input_schema="alto.Text")

    def shout(value: Any) -> Any:
        return value

    for kind in ("map", "split", "batch", "aggregate"):
        with pytest.raises(
            ConfigError, match=rf"write @app.{kind}\(source=\.\.\., schema=\.\.\.\)"
        ):
            getattr(app, kind)(shout)
    with pytest.raises(ConfigError, match="keyword arguments only"):
        app.map(app.input)  # type: ignore[misc]
    with pytest.raises(TypeError, match="sourse"):  # a misspelt option stays a TypeError
        app.map(sourse=app.input, schema="alto.Text")  # type: ignore[call-arg]


def test_source_app_says_use_app_input() -> None:
    app = App("whole", input_schema="alto.Text")
    with pytest.raises(ConfigError) as caught:
        app.map(source=app, schema="alto.Text")  # type: ignore[arg-type]
    assert "source=app.input" in str(caught.value)
    assert "input_schema" not in str(caught.value)  # before: the whole App repr


def test_stage_names_say_what_is_allowed() -> None:
    app = App("names", input_schema="alto.Text")
    with pytest.raises(ConfigError) as caught:
        app.map(source=app.input, schema="alto.Text")(lambda value: value)
    assert "'<lambda>'" in str(caught.value) and "name='...'" in str(caught.value)
    app.map(source=app.input, schema="alto.Text", name="loud")(lambda value: value)
    with pytest.raises(ConfigError) as caught:
        app.map(source=app.input, schema="alto.Text", name="my stage.v2")(lambda value: value)
    assert "only letters, digits, '_' and '-'" in str(caught.value)
    with pytest.raises(ConfigError, match="reserved"):
        app.map(source=app.input, schema="alto.Text", name="input")(lambda value: value)


def test_names_too_long_for_kafka_topics_are_refused_early() -> None:
    # Kafka topic names are 1-249 characters; the longest of an app is <app>.<stage>.changelog.
    App("a" * 237)
    with pytest.raises(ConfigError, match="at most 237"):
        App("a" * 238)
    app = App("a" * 200, input_schema="alto.Text")
    app.map(source=app.input, schema="alto.Text", name="m" * 44)(lambda value: value)
    with pytest.raises(ConfigError, match="over Kafka's 249"):
        app.aggregate(source="m" * 44, closes=app.input, schema="alto.Text", name="g" * 40)(
            lambda children: None
        )
