"""Shared pieces of the operating commands: options, errors, time parsing, output.

Exit codes: 0 success; 1 a failure while running (a query timed out, Kafka
failed mid-way, topics differ from their spec); 2 bad usage (unknown app,
stage, topic or query id, bad arguments, Kafka unreachable, credentials or ACL
refused); 130 interrupted.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from alto_stream.errors import AccessError, AltoError, BrokerError, ConfigError

if TYPE_CHECKING:
    from alto_stream.ops.records import DecodedRecord
    from alto_stream.runtime.kafka import KafkaTransport

__all__ = [
    "Bootstrap",
    "JsonFlag",
    "bind_socket",
    "connect",
    "emit_json",
    "err",
    "fail",
    "handled",
    "out",
    "parse_time",
    "require_partitions",
    "say_app_decodes",
]

Bootstrap = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-servers",
        "-b",
        envvar="ALTO_BOOTSTRAP_SERVERS",
        help="Kafka bootstrap servers, host:port,... (default 127.0.0.1:9092).",
        show_default=False,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]

# Piped output (tests, scripts, `| less`) gets wide lines instead of rich's 80 columns.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)

USAGE_ERRORS: tuple[type[AltoError], ...] = (ConfigError, BrokerError, AccessError)
"""Errors that mean the command was asked something it cannot do: exit status 2
(AccessError: Kafka refused the credentials, the certificate or an ACL)."""


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr (a JSON object with JSON logs) and exit with ``code``."""
    from alto_stream.ops.logs import error_line

    line = error_line(message)
    err.print(Text(f"error: {message}", style="red") if line is None else Text(line))
    raise typer.Exit(code)


@contextmanager
def handled() -> Iterator[None]:
    """Turn alto-stream errors into a one-line message and an exit status."""
    try:
        yield
    except USAGE_ERRORS as exc:
        fail(str(exc), 2)
    except AltoError as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None


def connect(bootstrap: str | None) -> KafkaTransport:
    """A Kafka transport, once a bootstrap server answered (exit 2 if none does in time)."""
    from alto_stream.ops.connect import check_broker
    from alto_stream.runtime.kafka import KafkaTransport

    return KafkaTransport(check_broker(bootstrap), client_id="alto-stream-cli")


async def require_partitions(
    transport: KafkaTransport, topics: Sequence[str], partitions: Sequence[int] | None
) -> None:
    """:class:`ConfigError` for a ``--partition`` that none of ``topics`` has."""
    if not partitions:
        return
    counts = {topic: await transport.partitions(topic) for topic in topics}
    most = max(counts.values())
    missing = sorted({p for p in partitions if p >= most})
    if missing:
        have = ", ".join(f"{topic} has {n} (0-{n - 1})" for topic, n in counts.items())
        raise ConfigError(
            f"no partition {', '.join(map(str, missing))}: {have}; fix: a --partition "
            "below that, or none for all of them"
        )


def say_app_decodes(items: Sequence[DecodedRecord]) -> bool:
    """Say once on stderr that ``--app`` decodes records of an app's own schemas.

    True when it was said (some of ``items`` were undecodable for want of a schema).
    """
    if not any(i.envelope is None and "schema" in (i.error or "") for i in items):
        return False
    err.print(
        "note: records of schemas not built in are undecodable without the app; "
        "fix: --app APP decodes them with the app's own schemas",
        style="yellow",
    )
    return True


_RELATIVE = re.compile(r"^-?(\d+(?:\.\d+)?)\s*(s|m|h|d)(?:\s+ago)?$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_time(text: str) -> float:
    """Seconds since the epoch from ``1700000000``, ISO 8601, ``now`` or ``-5m``/``2h ago``.

    >>> parse_time("1700000000.5")
    1700000000.5
    """
    raw = text.strip()
    if raw == "now":
        return time.time()
    try:
        return float(raw)
    except ValueError:
        pass
    match = _RELATIVE.match(raw)
    if match:
        return time.time() - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        return datetime.fromisoformat(raw).timestamp()
    except ValueError:
        raise ConfigError(
            f"bad time {text!r}: expected seconds since the epoch, an ISO 8601 date-time "
            "(2025-01-31T12:00:00), 'now', or a duration back from now (-10m, 2h ago)"
        ) from None


def emit_json(data: Any) -> None:
    """Print ``data`` as one line of JSON on stdout."""
    typer.echo(json.dumps(data, default=str))


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (:class:`ConfigError` when taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot serve on {host}:{port}: {exc}; fix: another --port") from exc
    sock.set_inheritable(True)
    return sock
