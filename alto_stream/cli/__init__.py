"""The ``alto-stream`` command line: a root typer app plus one sub-app per module.

Every sibling module named ``<name>_cmd.py`` is registered at import time: a
module that defines ``register(root: typer.Typer) -> None`` adds what it likes
(top-level commands); otherwise its ``app: typer.Typer`` becomes the command
group ``alto-stream <name>`` (underscores become dashes). Adding a command
therefore means adding a module, never editing this one.

Any ``AltoError`` a command raises ends the program with its message on stderr
and exit status 1, without a traceback.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from alto_stream import __version__
from alto_stream.cli._help import use_everywhere
from alto_stream.cli._security import add_security_options
from alto_stream.errors import AltoError, ConfigError

__all__ = ["app", "main"]

app = typer.Typer(
    name="alto-stream",
    help="Run compound-AI apps as streaming dataflows on Apache Kafka.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"alto-stream {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug detail.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Log warnings only.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            envvar="ALTO_LOG_FORMAT",
            help="Log lines as text or json (one object per line) [default: text].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run compound-AI apps as streaming dataflows on Apache Kafka."""
    from alto_stream.ops import logs

    # Neither flag: what the process that started this one chose (`up -v` -> its workers).
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logs.inherited_level()
    try:
        logs.configure(level, log_format)
    except AltoError as exc:
        raise typer.BadParameter(str(exc), param_hint="--log-format") from None


def _register_subcommands() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.endswith("_cmd"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(app)
        else:
            name = info.name.removesuffix("_cmd").replace("_", "-")
            app.add_typer(module.app, name=name)


_register_subcommands()
add_security_options(app)
use_everywhere(app)


def main() -> None:
    """Entry point of the ``alto-stream`` console script."""
    try:
        app()
    except AltoError as exc:
        Console(stderr=True, soft_wrap=True).print(Text(f"error: {exc}", style="red"))
        sys.exit(2 if isinstance(exc, ConfigError) else 1)  # bad usage: 2, as every command
