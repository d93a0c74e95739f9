"""Resolve an app reference (``"package.module:attribute"``) to an :class:`App`.

Three forms:

- ``"workers.textflow:app"``: an attribute holding the app;
- ``"workers.textflow"``: the same, attribute ``app``;
- ``"workers.textflow:build('tf-1', word_delay=0.1)"``: a factory called with
  literal arguments (strings, numbers, booleans, None), so that tests and
  scripts can run one app under many names. A factory that needs no argument
  may be named bare (``"workers.textflow:build"``).

>>> load_app("workers.textflow:app").name
'textflow'
>>> load_app("workers.textflow:build('docs-1')").name
'docs-1'
"""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from alto_stream import settings
from alto_stream.app import App, Topology
from alto_stream.errors import ConfigError

__all__ = ["keep_schema_versions", "load_app", "load_topology"]

log = logging.getLogger(__name__)


def load_app(ref: str) -> App:
    """The app that ``ref`` names (see the module docstring for the forms).

    The current directory is importable, as with ``python -m``, so
    ``workers.textflow:app`` works from a checkout. :class:`ConfigError` when
    the module or attribute is missing, a factory fails, or it is not an app.
    """
    module_name, _, expression = ref.strip().partition(":")
    attr, args, kwargs = _parse_call(ref, expression or "app")
    if not module_name or not all(part.isidentifier() for part in module_name.split(".")):
        raise ConfigError(
            f"bad app reference {ref!r}: expected 'package.module:attribute' "
            "(for example 'workers.textflow:app')"
        )
    module = _import(ref, module_name)
    found = getattr(module, attr, None)
    calling = args is not None or (
        callable(found) and not isinstance(found, App) and _no_arguments(found)
    )
    if calling and callable(found):
        try:
            found = found(*(args or ()), **(kwargs or {}))
        except Exception as exc:  # a failing factory: say which, not a traceback
            raise ConfigError(f"app factory {ref!r} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(found, App):
        apps = sorted(name for name, value in vars(module).items() if isinstance(value, App))
        raise ConfigError(
            f"unknown app {ref!r}: {module_name}.{attr} is "
            f"{'missing' if found is None else type(found).__name__}, expected an App; "
            f"apps in that module: {', '.join(apps) or '(none)'}"
        )
    return found


def load_topology(ref: str) -> tuple[App, Topology]:
    """The app that ``ref`` names and its checked topology (:class:`ConfigError` if bad)."""
    app = load_app(ref)
    return app, app.topology()


def keep_schema_versions(app: App) -> list[str]:
    """Archive each current version of the app's own schemas that has no snapshot yet.

    Records written with a version stay readable after it changes only while a
    snapshot of it is kept in ``history/`` beside its ``.avsc``. Workers (``up``'s too),
    ``push`` and ``topics apply`` call this as they start (since 2026-12-03), so
    every version that wrote records on this host is kept; before, it was left to
    ``app.registry.archive()``, and a new user who added a field with a default to
    a running app's schema saw every record in flight dead-lettered and its
    aggregate stop at its restore. The built-in schemas are the project's to
    archive. Returns the files written; a folder that cannot be written to (an
    installed package) is logged, not an error.
    """
    try:
        written = app.registry.archive(skip=[settings.schemas_dir()])
    except OSError as exc:
        log.warning(
            "could not keep a snapshot of app %s's schema versions (%s): records written "
            "with them become unreadable once they change; fix: run app.registry.archive() "
            "where the schemas' folder is writable, and ship its history/ with the app",
            app.name,
            exc,
        )
        return []
    for path in written:
        log.info("kept schema version %s (records written with it stay readable)", path)
    return [str(path) for path in written]


def _import(ref: str, module_name: str) -> ModuleType:
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            fix = "run from the project root, set PYTHONPATH, or correct the name"
            near = _nearby(module_name)
            if near is not None:
                fix = f"did you mean {near + ':app'!r}?"
            raise ConfigError(
                f"unknown app {ref!r}: no module named {missing!r} on the Python path; fix: {fix}"
            ) from exc
        raise ConfigError(f"app module {module_name!r} failed to import: {exc}") from exc
    except Exception as exc:  # a broken app module: say so instead of a traceback
        raise ConfigError(
            f"app module {module_name!r} failed to import: {type(exc).__name__}: {exc}"
        ) from exc


def _nearby(module_name: str) -> str | None:
    """``workers.NAME`` where the module is not found as NAME but ``workers/NAME.py`` exists."""
    if "." in module_name or not module_name.isidentifier():
        return None
    if os.path.isfile(os.path.join("workers", f"{module_name}.py")):
        return f"workers.{module_name}"
    return None


def _parse_call(
    ref: str, expression: str
) -> tuple[str, tuple[Any, ...] | None, dict[str, Any] | None]:
    """``"name"`` or ``"name(literal, key=literal)"`` -> (name, args, kwargs)."""
    if "(" not in expression:
        return expression.strip(), None, None
    try:
        node = ast.parse(expression.strip(), mode="eval").body
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            raise ValueError("not a call of a name")
        args = tuple(ast.literal_eval(a) for a in node.args)
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
    except (SyntaxError, ValueError) as exc:
        raise ConfigError(
            f"bad app reference {ref!r}: expected module:factory(literal, key=literal) "
            f"with literal arguments only ({exc})"
        ) from None
    return node.func.id, args, kwargs


def _no_arguments(func: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(
        p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params
    )
