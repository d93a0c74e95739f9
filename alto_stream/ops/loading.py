"""Resolve an app reference (``"package.module:attribute"``) to an :class:`App`.

>>> load_app("workers.textflow:app").name
'textflow'
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

from alto_stream.app import App, Topology
from alto_stream.errors import ConfigError

__all__ = ["load_app", "load_topology"]


def load_app(ref: str) -> App:
    """The app that ``ref`` names: ``"module:attr"``, or ``"module"`` (attribute ``app``).

    The attribute may also be a function taking no argument that returns the
    app. The current directory is importable, as with ``python -m``, so
    ``workers.textflow:app`` works from a checkout. :class:`ConfigError` when
    the module or attribute is missing or is not an app.
    """
    module_name, _, attr = ref.strip().partition(":")
    attr = attr or "app"
    if not module_name or not all(part.isidentifier() for part in module_name.split(".")):
        raise ConfigError(
            f"bad app reference {ref!r}: expected 'package.module:attribute' "
            "(for example 'workers.textflow:app')"
        )
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise ConfigError(
                f"unknown app {ref!r}: no module named {missing!r} on the Python path; "
                "fix: run from the project root, set PYTHONPATH, or correct the name"
            ) from exc
        raise ConfigError(f"app module {module_name!r} failed to import: {exc}") from exc
    except Exception as exc:  # a broken app module: say so instead of a traceback
        raise ConfigError(
            f"app module {module_name!r} failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    found = getattr(module, attr, None)
    if callable(found) and not isinstance(found, App) and _no_arguments(found):
        try:
            found = found()
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


def _no_arguments(func: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(
        p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params
    )
