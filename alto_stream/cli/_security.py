"""The security flags of every command that connects to Kafka (``--security-protocol`` ...).

:func:`add_security_options` gives each command that takes ``--bootstrap-servers``
the same flags. A flag given sets its ``ALTO_*`` variable for the length of the
command, so the command's clients and the worker processes it starts (``up``)
read one set of settings (:meth:`alto_stream.security.Security.from_env`).
There is no password flag: a command line is visible to every user of the
machine, so the password comes from ``ALTO_SASL_PASSWORD`` or from the file
``--sasl-password-file`` names.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from alto_stream.errors import ConfigError
from alto_stream.security import ENV, Security

__all__ = ["add_security_options", "security_env"]

_PANEL = "Security (Kafka authentication and TLS)"


def _option(flag: str, env: str, text: str, kind: Any = str | None) -> Any:
    return Annotated[
        kind,
        typer.Option(flag, help=f"{text} [env: {env}]", show_default=False, rich_help_panel=_PANEL),
    ]


_OPTIONS: dict[str, tuple[str, Any]] = {
    "security_protocol": (
        ENV["protocol"],
        _option(
            "--security-protocol",
            ENV["protocol"],
            "PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL.",
        ),
    ),
    "sasl_mechanism": (
        ENV["mechanism"],
        _option(
            "--sasl-mechanism",
            ENV["mechanism"],
            "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (default).",
        ),
    ),
    "sasl_username": (
        ENV["username"],
        _option("--sasl-username", ENV["username"], "SASL user name."),
    ),
    "sasl_password_file": (
        ENV["password_file"],
        _option(
            "--sasl-password-file",
            ENV["password_file"],
            f"File holding the SASL password (or set {ENV['password']}; never a flag).",
            Path | None,
        ),
    ),
    "ssl_cafile": (
        ENV["cafile"],
        _option("--ssl-cafile", ENV["cafile"], "CA bundle (PEM) of the brokers.", Path | None),
    ),
    "ssl_certfile": (
        ENV["certfile"],
        _option(
            "--ssl-certfile", ENV["certfile"], "Client certificate (PEM), for mTLS.", Path | None
        ),
    ),
    "ssl_keyfile": (
        ENV["keyfile"],
        _option("--ssl-keyfile", ENV["keyfile"], "Client key (PEM), for mTLS.", Path | None),
    ),
    "ssl_key_password_file": (
        ENV["key_password_file"],
        _option(
            "--ssl-key-password-file",
            ENV["key_password_file"],
            "File holding the client key's password.",
            Path | None,
        ),
    ),
    "ssl_check_hostname": (
        ENV["check_hostname"],
        Annotated[
            bool | None,
            typer.Option(
                "--ssl-check-hostname/--no-ssl-check-hostname",
                help=f"Whether the broker's certificate must name its host (default: yes) "
                f"[env: {ENV['check_hostname']}]",
                show_default=False,
                rich_help_panel=_PANEL,
            ),
        ],
    ),
}

_SHADOWED = {
    ENV["password_file"]: ENV["password"],
    ENV["key_password_file"]: ENV["key_password"],
}
"""A ``*_FILE`` flag wins over the secret's variable, which is cleared for the command."""


@contextmanager
def security_env(values: Mapping[str, Any]) -> Iterator[Security]:
    """Set the ``ALTO_*`` variables of the flags given, for the block; yields the settings."""
    overrides: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        env = _OPTIONS[name][0]
        overrides[env] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        if env in _SHADOWED:
            overrides[_SHADOWED[env]] = ""
    saved = {name: os.environ.get(name) for name in overrides}
    os.environ.update(overrides)
    try:
        yield Security.from_env()
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def _with_security(callback: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(callback, eval_str=True)

    @functools.wraps(callback)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name, None) for name in _OPTIONS}
        try:
            with security_env(values):
                return callback(*args, **kwargs)
        except ConfigError as exc:
            # A flag's value was wrong before the command began: one line, exit 2.
            from alto_stream.cli._opsutil import fail

            fail(str(exc), 2)

    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=kind)
        for name, (_, kind) in _OPTIONS.items()
    ]
    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), *extra]
    )
    wrapper.__annotations__ = {
        **{p.name: p.annotation for p in signature.parameters.values()},
        **{p.name: p.annotation for p in extra},
    }
    return wrapper


def add_security_options(root: typer.Typer) -> None:
    """Give every command of ``root`` (and its groups) with a ``bootstrap`` option the flags."""
    for command in root.registered_commands:
        callback = command.callback
        if callback is not None and "bootstrap" in inspect.signature(callback).parameters:
            command.callback = _with_security(callback)
    for group in root.registered_groups:
        if group.typer_instance is not None:
            add_security_options(group.typer_instance)
