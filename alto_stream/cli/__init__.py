"""The ``alto-stream`` command line: a root typer app plus one sub-app per module.

Every sibling module named ``<name>_cmd.py`` is registered at import time: a
module that defines ``register(root: typer.Typer) -> None`` adds what it likes
(top-level commands); otherwise its ``app: typer.Typer`` becomes the command
group ``alto-stream <name>`` (underscores become dashes). Adding a command
therefore means adding a module, never editing this one.

Any ``AltoError`` a command raises ends the program with its message on stderr
and exit status 1 (2 for a ``ConfigError``), without a traceback; a closed
standard output (``| head``) ends it with :data:`CLOSED_PIPE_EXIT`.
"""

from __future__ import annotations

import importlib
import logging
import os
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
from alto_stream.ops.logs import error_line

__all__ = ["CLOSED_PIPE_EXIT", "app", "main"]

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


CLOSED_PIPE_EXIT = 141
"""The exit status when the reader of standard output went away (``| head -1``): a Unix
tool's, killed by SIGPIPE (128 + 13). click's own is 1, which says a command failed."""


def main() -> None:
    """Entry point of the ``alto-stream`` console script."""
    was_devnull = _stdout_is_devnull()
    try:
        app()
    except AltoError as exc:
        line = error_line(str(exc))
        said = Text(f"error: {exc}", style="red") if line is None else Text(line)
        Console(stderr=True, soft_wrap=True).print(said)
        sys.exit(2 if isinstance(exc, ConfigError) else 1)  # bad usage: 2, as every command
    except SystemExit as exc:
        if exc.code == 1 and _pipe_closed(was_devnull):
            sys.exit(CLOSED_PIPE_EXIT)
        raise


def _pipe_closed(was_devnull: bool) -> bool:
    """Whether the exit status 1 under way is click's or rich's answer to EPIPE on stdout.

    click wraps stdout (typer has click's code of its own: the wrapper is known by
    its name); rich points stdout at the null device.
    """
    if type(sys.stdout).__name__ == "PacifyFlushWrapper":
        return True
    return not was_devnull and _stdout_is_devnull()


def _stdout_is_devnull() -> bool:
    try:
        here, null = os.fstat(1), os.stat(os.devnull)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (null.st_dev, null.st_ino)
