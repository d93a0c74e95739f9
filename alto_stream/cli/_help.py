"""How every command's ``--help`` reads: literal help texts, plain usage lines, bare flags.

typer renders help with rich markup, so a help text's ``[default: ...]`` was
taken for a markup tag and vanished; its usage line writes a required argument
as ``{APP}`` and its type column gives a flag the type ``<bool>``.
:class:`AltoCommand` and :class:`AltoGroup` (the classes of every command and
group, see :func:`use_everywhere`) keep help texts literal, write usage the
POSIX way (``APP STAGE``, ``[TEXT]...``) and leave a flag's type empty.

:class:`AltoGroup` also keeps an ``EOFError`` raised inside a command from
being taken for Ctrl-D: click and typer print only ``Aborted.`` for one (exit
1), which is what a worker's log said when numpy met an empty file. Their own
prompts turn Ctrl-D into ``Abort`` before it gets there, so an ``EOFError``
that reaches the group is a failure, shown as one (:class:`EndOfDataError`).
"""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

__all__ = ["AltoCommand", "AltoGroup", "EndOfDataError", "usage_name", "use_everywhere"]


class EndOfDataError(RuntimeError):
    """An ``EOFError`` from inside a command (a file or stream ended early), not a Ctrl-D."""


class AltoCommand(TyperCommand):
    """A typer command whose help shows its texts as written."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _tidy(self)

    def get_help_option(self, ctx: Any) -> Any:
        """``--help``, a flag like the others."""
        return _bare_flag(super().get_help_option(ctx))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        """``[OPTIONS] APP STAGE`` or ``[OPTIONS] APP [TEXT]...``."""
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                pieces.append(usage_name(param))
        return pieces


class AltoGroup(TyperGroup):
    """A typer command group whose help shows its texts as written."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _tidy(self)

    def get_help_option(self, ctx: Any) -> Any:
        """``--help``, a flag like the others."""
        return _bare_flag(super().get_help_option(ctx))

    def invoke(self, ctx: Any) -> Any:
        """Run the command; an ``EOFError`` comes out as :class:`EndOfDataError`."""
        try:
            return super().invoke(ctx)
        except EOFError as exc:
            raise EndOfDataError(
                f"data ended early inside the command ({type(exc).__name__}: {exc}); "
                "this is not an interrupt: the traceback shows what was being read"
            ) from exc


def usage_name(param: TyperArgument) -> str:
    """An argument as a usage line shows it: ``APP``, ``[TEXT]...``."""
    name = (param.metavar or (param.name or "").upper()).removesuffix("...")
    if not param.required and not name.startswith("["):
        name = f"[{name}]"
    return f"{name}..." if param.nargs != 1 else name


def use_everywhere(root: typer.Typer) -> None:
    """Make the classes above those of ``root``, its commands and its groups."""
    if not isinstance(root.info.cls, type):  # typer's placeholder for its default
        root.info.cls = AltoGroup
    for command in root.registered_commands:
        if command.cls in (None, TyperCommand):
            command.cls = AltoCommand
    for group in root.registered_groups:
        if not isinstance(group.cls, type):
            group.cls = AltoGroup
        if group.typer_instance is not None:
            use_everywhere(group.typer_instance)


def _tidy(command: TyperCommand | TyperGroup) -> None:
    if command.help:
        command.help = escape(command.help)
    for param in command.params:
        help_text = getattr(param, "help", None)
        if help_text:
            param.help = escape(help_text)  # type: ignore[attr-defined]
        if isinstance(param, TyperArgument) and param.metavar is None:
            param.metavar = (param.name or "").upper()  # STAGE, as usage lines write it
        _bare_flag(param)


def _bare_flag(param: Any) -> Any:
    if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
        param.metavar = ""  # the type column: nothing for an on/off flag
    return param
