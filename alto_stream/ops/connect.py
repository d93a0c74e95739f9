"""Fail fast, and clearly, when Kafka does not answer.

aiokafka retries a silent address for a long time; the commands first ask one
bootstrap server for metadata (a raw probe with a socket timeout), so a wrong
address or a stopped broker is a one-line error within seconds.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import threading
import time
from collections.abc import Sequence

from alto_stream.broker.probe import fetch_metadata
from alto_stream.errors import BrokerError, ConfigError
from alto_stream.security import ENV, Security
from alto_stream.settings import bootstrap_servers
from alto_stream.transport import Transport

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "check_broker",
    "check_kafka",
    "connect_timeout",
    "parse_bootstrap",
]

DEFAULT_CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a broker to answer (``ALTO_CONNECT_TIMEOUT`` overrides)."""


def connect_timeout() -> float:
    """The connect timeout: ``ALTO_CONNECT_TIMEOUT`` seconds, else the default."""
    raw = os.environ.get("ALTO_CONNECT_TIMEOUT")
    if not raw:
        return DEFAULT_CONNECT_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not seconds > 0:  # NaN (a traceback from max() before 2026-12-03), 0, negatives
        raise ConfigError(
            f"ALTO_CONNECT_TIMEOUT must be a number of seconds above 0, got {raw!r}"
        ) from None
    return max(seconds, 0.1)


def parse_bootstrap(bootstrap: str) -> list[tuple[str, int]]:
    """``"host:port,host:port"`` as (host, port) pairs; :class:`ConfigError` when malformed."""
    out = []
    for item in bootstrap.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(
                f"bad bootstrap server {item.strip()!r} in {bootstrap!r}: expected host:port"
            )
        out.append((host.strip("[]"), int(port)))
    return out


def check_broker(
    bootstrap: str | None = None,
    *,
    timeout: float | None = None,
    security: Security | None = None,
) -> str:
    """Wait until a bootstrap server answers a metadata request; returns the address.

    Tries each server in turn until ``timeout`` seconds have passed, then
    raises :class:`BrokerError` saying where it looked and how to fix it.
    With ``security`` (default: from the environment) other than PLAINTEXT,
    one connection authenticates instead: refused credentials or certificates
    raise :class:`~alto_stream.errors.AccessError`.
    """
    address = bootstrap_servers(bootstrap)
    servers = parse_bootstrap(address)
    limit = connect_timeout() if timeout is None else timeout
    security = Security.from_env() if security is None else security
    if security.secured:
        _probe_secured(servers, security, limit)
        return address
    deadline = time.monotonic() + limit
    last = "no answer"
    while True:
        for host, port in servers:
            left = deadline - time.monotonic()
            try:
                fetch_metadata(host, port, timeout=max(min(left, 2.0), 0.1))
                return address
            except OSError as exc:
                last = f"{host}:{port}: {exc}"
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"Kafka does not answer at {address} (waited {limit:g}s; last error {last}); "
                "fix: start a local broker with `alto-stream broker start`, or point "
                "--bootstrap-servers / ALTO_BOOTSTRAP_SERVERS at a running cluster; a "
                "secured listener (TLS, SASL) answers only clients that use its security: "
                f"set {ENV['protocol']} and the rest (docs/security.md)"
            )
        time.sleep(min(0.2, max(deadline - time.monotonic(), 0)))


async def check_kafka(transport: Transport, topics: Sequence[str]) -> None:
    """What ``push`` checks first, for a client on a Kafka transport (others pass).

    A broker must answer within ``ALTO_CONNECT_TIMEOUT`` seconds
    (:class:`BrokerError`, see :func:`check_broker`) and ``topics`` must exist
    (:class:`ConfigError` naming the missing ones and ``topics apply``):
    without it aiokafka retried a missing topic for 40 s, logging a line each
    time, then raised a bare UnknownTopicOrPartitionError.
    """
    # Only a Kafka transport has a broker to ask, and its module is loaded then:
    # importing it here would load aiokafka for in-memory clients too.
    kafka = sys.modules.get("alto_stream.runtime.kafka")
    if kafka is None or not isinstance(transport, kafka.KafkaTransport):
        return
    from alto_stream.ops.topics import require_topics

    await asyncio.to_thread(check_broker, transport.bootstrap, security=transport.security)
    await require_topics(kafka.KafkaOps(transport), topics)


def _probe_secured(servers: list[tuple[str, int]], security: Security, timeout: float) -> None:
    """Run the authenticated probe on a loop of its own (callers may be inside one)."""
    from alto_stream.runtime.kafka.security import probe

    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(probe(servers, security, timeout))
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="alto-stream-probe", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
