"""What an app and its stages must be to be registered: names, handlers, options.

:class:`~alto_stream.app.App` calls these as its decorators run, so that a
mistake shows where the decorator is written, not at each query: names that
fit Kafka's topic names, a handler that can take one record (an aggregate's:
its children, and a context if it asks for one), retry and time-out options of
the right types, and keyword arguments only (``@app.map`` without parentheses).
Each refuses with a :class:`~alto_stream.errors.ConfigError` that says the fix.

>>> check_app_name("docs")
>>> check_app_name("my docs")  # doctest: +ELLIPSIS
Traceback (most recent call last):
    ...
alto_stream.errors.ConfigError: app name 'my docs' must start with a letter and hold only ...
"""

from __future__ import annotations

import functools
import inspect
import math
import re
from collections.abc import Callable, Container
from typing import Any, TypeVar

from alto_stream.errors import ConfigError
from alto_stream.topology import INPUT, ContextParam, StageKind

__all__ = [
    "LONGEST_SUFFIX",
    "NAME",
    "NAME_RULE",
    "TOPIC_MAX",
    "RetryOn",
    "call_timeout",
    "check_app_name",
    "check_new_stage",
    "check_one_argument",
    "context_param",
    "exception_types",
    "keywords_only",
    "seconds",
    "whole",
]

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
"""What an app's or a stage's name must match."""
NAME_RULE = "start with a letter and hold only letters, digits, '_' and '-'"
""":data:`NAME` in words, for error messages."""
TOPIC_MAX = 249
"""Kafka's longest topic name; an app's longest is ``<app>.<stage>.changelog``."""
LONGEST_SUFFIX = ".changelog"
"""The longest suffix of an app's topic names (an aggregate's changelog)."""
M = TypeVar("M", bound=Callable[..., Any])
RetryOn = type[BaseException] | tuple[type[BaseException], ...]
"""The ``retry_on`` of a stage: one exception type, or a tuple of them."""


def keywords_only(method: M) -> M:
    """``method`` (a stage decorator), refusing positional arguments with the fix.

    ``@app.map`` without parentheses hands the handler over positionally, and
    Python's own error ("takes 1 positional argument but 2 were given") does
    not say what to write instead.
    """

    @functools.wraps(method)
    def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        if args:
            what = method.__name__
            if callable(args[0]):
                raise ConfigError(
                    f"@app.{what} needs its options: write @app.{what}(source=..., "
                    f"schema=...) above {getattr(args[0], '__name__', 'the handler')}"
                )
            raise ConfigError(
                f"app.{what} takes keyword arguments only, got {args[0]!r} positionally; "
                f"write @app.{what}(source=..., schema=...)"
            )
        return method(self, **kwargs)

    return checked  # type: ignore[return-value]


def check_app_name(name: str) -> None:
    """:class:`ConfigError` unless ``name`` may name an app: it becomes part of topic names."""
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"app name {name!r} must {NAME_RULE} (it becomes part of topic names)")
    longest = TOPIC_MAX - len(f".x{LONGEST_SUFFIX}")
    if len(name) > longest:
        raise ConfigError(
            f"app name {name[:40]}... is {len(name)} characters: at most "
            f"{longest}, for its topics (<app>.<stage>{LONGEST_SUFFIX}) to fit Kafka's "
            f"{TOPIC_MAX}; fix: a shorter name"
        )


def check_new_stage(
    app: str,
    stages: Container[str],
    name: str,
    func: Callable[..., Any],
    kind: StageKind,
    *,
    named: bool,
) -> None:
    """:class:`ConfigError` unless ``func`` may be registered as stage ``name`` of ``app``.

    ``stages``: the names the app has already; ``named``: whether the name was
    given (``name=``) rather than taken from the handler.
    """
    if name == INPUT:
        raise ConfigError(f"stage name {name!r} is reserved (the app's input); fix: name=...")
    if not NAME.match(name):
        where = "name=" if named else f"the handler's name (a {kind.value}'s default name)"
        fix = "another name=" if named else f"give one: @app.{kind.value}(..., name='...')"
        raise ConfigError(
            f"stage name {name!r} (from {where}) is not allowed: a stage name must "
            f"{NAME_RULE} (it becomes part of topic names); fix: {fix}"
        )
    longest = f"{app}.{name}{LONGEST_SUFFIX if kind is StageKind.AGGREGATE else '.dlq'}"
    if len(longest) > TOPIC_MAX:
        raise ConfigError(
            f"stage name {name[:40]}... is too long: its topic {longest[:60]}... would be "
            f"{len(longest)} characters, over Kafka's {TOPIC_MAX}; fix: a shorter name="
        )
    if name in stages:
        raise ConfigError(f"app {app!r} already has a stage named {name!r}")
    if not callable(func):
        raise ConfigError(f"stage {name!r}: the handler must be a function, got {func!r}")
    is_generator = inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func)
    if is_generator and kind is not StageKind.SPLIT:
        raise ConfigError(f"stage {name!r}: only a split may be a generator")


def exception_types(retry_on: RetryOn) -> tuple[type[BaseException], ...]:
    """``retry_on`` as a tuple of exception types; :class:`ConfigError` for anything else."""
    types = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    for kind in types:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise ConfigError(f"retry_on takes exception types, got {kind!r}")
    return types


def call_timeout(timeout: float | None, what: str = "timeout") -> float | None:
    """``timeout`` (seconds) if it is None or > 0; else :class:`ConfigError`."""
    return None if timeout is None else seconds(what, timeout, positive=True)


def whole(what: str, value: object, minimum: int) -> int:
    """``value`` if it is an ``int`` (not a bool) >= ``minimum``; else :class:`ConfigError`.

    A float (``retries=1.5``) was taken, then failed every record it was used for.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{what} must be a whole number >= {minimum}, got {value!r}")
    return value


def seconds(what: str, value: object, *, positive: bool = False) -> float:
    """``value`` if it is a finite number of seconds >= 0 (> 0 if ``positive``)."""
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > 0 or (value == 0 and not positive))
    ):
        return float(value)
    bound = "> 0" if positive else ">= 0"
    raise ConfigError(f"{what} must be a number of seconds {bound}, got {value!r}")


def check_one_argument(kind: StageKind, stage: str, handler: Callable[..., Any]) -> None:
    """:class:`ConfigError` unless ``handler`` can be called with one positional argument."""
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):
        return  # a builtin without a signature: its first call will tell
    try:
        signature.bind(None)
    except TypeError:
        takes = "values: the list of values" if kind is StageKind.BATCH else "value"
        shown = signature.replace(return_annotation=inspect.Signature.empty)
        function = getattr(handler, "__name__", "handler")
        raise ConfigError(
            f"{kind.value} {stage!r}: {function}{shown} cannot take one record; expected "
            f"{function}({takes}), one required positional parameter"
        ) from None


def context_param(stage: str, handler: Callable[..., Any]) -> ContextParam | None:
    """How an aggregate's handler takes a context: a 2nd positional parameter, or ``context=``.

    :class:`ConfigError` naming the stage when the call so chosen cannot bind
    (a keyword-only parameter other than ``context``, a third required one...),
    so that the mistake shows where the decorator is written, not at each query.
    """
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):
        return None  # a builtin without a signature: its first call will tell
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    context: ContextParam | None = None
    if any(p.name == "context" and p.kind is p.KEYWORD_ONLY for p in params):
        context = "keyword"
    elif len(positional) >= 2 and (
        positional[1].default is inspect.Parameter.empty or positional[1].name == "context"
    ):
        context = "positional"
    try:
        if context == "keyword":
            signature.bind(None, context=None)
        elif context == "positional":
            signature.bind(None, None)
        else:
            signature.bind(None)
    except TypeError as exc:
        shown = signature.replace(return_annotation=inspect.Signature.empty)
        function = getattr(handler, "__name__", "handler")
        raise ConfigError(
            f"aggregate {stage!r}: {function}{shown} cannot be called as "
            f"{function}({_AGGREGATE_CALLS[context]}) ({exc}); expected f(children) or "
            "f(children, context), where context may be keyword-only: f(children, *, context)"
        ) from None
    return context


_AGGREGATE_CALLS: dict[ContextParam | None, str] = {
    None: "children",
    "positional": "children, context",
    "keyword": "children, context=context",
}
