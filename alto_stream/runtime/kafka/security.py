"""Security failures as one clear line: a probe of the credentials, and ACL refusals.

aiokafka logs why an authenticated connection failed and then retries, or
says only "Unable to bootstrap"; :func:`probe` opens one connection itself,
with a deadline, and names the cause (a wrong password or unknown user, a
certificate not signed by the given CA, a broker that wants a client
certificate). :func:`access_error` turns an ACL refusal into an
:class:`~alto_stream.errors.AccessError`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time

from aiokafka.conn import create_conn
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedSaslMechanismError,
)

from alto_stream.errors import AccessError, BrokerError
from alto_stream.security import ENV, Security

__all__ = ["access_error", "probe"]


def _not_in_the_clear_warning(record: logging.LogRecord) -> bool:
    # aiokafka warns on every SASL_PLAINTEXT + PLAIN connection (dozens a minute);
    # docs/security.md says it once: PLAIN without TLS is for tests only.
    return not record.getMessage().startswith("Sending username and password in the clear")


logging.getLogger("aiokafka.conn").addFilter(_not_in_the_clear_warning)

_DENIED = {
    TopicAuthorizationFailedError: "topic",
    GroupAuthorizationFailedError: "consumer group",
    ClusterAuthorizationFailedError: "cluster",
    TransactionalIdAuthorizationFailed: "transactional id",
}


def _who(security: Security) -> str:
    if security.sasl:
        return f"user {security.username!r}"
    if security.certfile:
        return f"the client certificate {security.certfile}"
    return "this client (no credentials)"


def access_error(exc: BaseException, action: str, security: Security) -> AccessError | None:
    """An AccessError for an ACL refusal or a failed authentication, else None."""
    cause = exc.__cause__ if isinstance(exc, KafkaConnectionError) and exc.__cause__ else exc
    for kind, what in _DENIED.items():
        if isinstance(cause, kind):
            # Kafka's text can be a dump of the Java request object: not for a reader.
            detail = " ".join(
                str(a) for a in cause.args if a and not hasattr(a, "host") and "(" not in str(a)
            )
            if action.startswith("create ACLs"):  # `topics grant` itself: the fix differs
                fix = (
                    "run it as a super user (`alto` on a cluster of `alto-stream broker start "
                    "--security ... --acl`: the settings that start printed)"
                )
            else:
                fix = (
                    "grant it the app's ACLs (`alto-stream topics grant APP --user NAME`, as "
                    "a super user; or kafka-acls), or connect as a user that has them"
                )
            return AccessError(
                f"Kafka denied access to {action}: {_who(security)} is not authorized for the "
                f"{what}{' ' + detail if detail else ''}; fix: {fix}"
            )
    if isinstance(cause, SaslAuthenticationFailed | UnsupportedSaslMechanismError):
        return _auth_refused(cause, security, "")
    return None


def _auth_refused(exc: BaseException, security: Security, where: str) -> AccessError:
    reason = " ".join(str(a) for a in exc.args if isinstance(a, str)) or type(exc).__name__
    if isinstance(exc, UnsupportedSaslMechanismError):
        # Not the credentials (a new user was sent to check them): the mechanism.
        return AccessError(
            f"Kafka does not take the SASL mechanism {security.mechanism} of "
            f"{_who(security)}{where}: {reason}; fix: set {ENV['mechanism']} "
            "(--sasl-mechanism) to one the listener enables (a broker started with "
            "`alto-stream broker start --security sasl-ssl` takes SCRAM-SHA-512 and SCRAM-SHA-256)"
        )
    return AccessError(
        f"Kafka refused the credentials of {_who(security)} ({security.mechanism}){where}: "
        f"{reason}; fix: check {ENV['username']} and {ENV['password']} / "
        f"{ENV['password_file']} ({ENV['password']}, when set, wins; an unknown user and a "
        "wrong password look the same)"
    )


def _tls_refused(exc: ssl.SSLError, security: Security, where: str) -> AccessError:
    reason = getattr(exc, "verify_message", None) or exc.reason or str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        ca = f"the CA {security.cafile}" if security.cafile else "the system's CAs"
        return AccessError(
            f"TLS failed{where}: the broker's certificate is not trusted by {ca} ({reason}); "
            f"fix: set {ENV['cafile']} (--ssl-cafile) to the CA bundle that signed it"
        )
    hint = (
        f"; fix: the broker may want a client certificate: set {ENV['certfile']} and "
        f"{ENV['keyfile']}"
        if not security.certfile
        else f"; fix: check that {security.certfile} is signed by a CA the broker trusts "
        "and is not out of its dates (`openssl x509 -noout -dates -in FILE`)"
    )
    if "WRONG_VERSION_NUMBER" in str(reason).upper():
        hint = "; fix: the port does not speak TLS: check --security-protocol and the address"
    return AccessError(f"TLS handshake failed{where}: {reason}{hint}")


async def _probe_one(host: str, port: int, security: Security, timeout: float) -> None:
    options = security.kafka_options()
    conn = await asyncio.wait_for(
        create_conn(
            host,
            port,
            client_id="alto-stream-probe",
            request_timeout_ms=max(int(timeout * 1000), 100),
            **options,
        ),
        timeout,
    )
    conn.close()


def _said(exc: BaseException) -> str:
    """What ``exc`` says, or its type's name when it says nothing (a bare TimeoutError)."""
    return str(exc) or type(exc).__name__


async def probe(servers: list[tuple[str, int]], security: Security, timeout: float) -> None:
    """Authenticate once to a bootstrap server within ``timeout`` s; AccessError or BrokerError.

    A refused connection is retried until the deadline (the broker may still be
    starting); a refused credential or certificate fails at once.
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        for host, port in servers:
            where = f" at {host}:{port}"
            left = max(min(deadline - time.monotonic(), 5.0), 0.2)
            try:
                await _probe_one(host, port, security, left)
                return
            except ssl.SSLError as exc:
                raise _tls_refused(exc, security, where) from None
            except (SaslAuthenticationFailed, UnsupportedSaslMechanismError) as exc:
                raise _auth_refused(exc, security, where) from None
            except KafkaConnectionError as exc:
                if isinstance(exc.__cause__, ssl.SSLError):
                    raise _tls_refused(exc.__cause__, security, where) from None
                last = f"{host}:{port}: {_said(exc)}"
            except (KafkaError, OSError, TimeoutError) as exc:
                last = f"{host}:{port}: {_said(exc)}"
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"Kafka does not answer over {security.describe()} at "
                f"{','.join(f'{h}:{p}' for h, p in servers)} (waited {timeout:g}s; last error "
                f"{last}); fix: check the address and that the port speaks {security.protocol}"
            )
        await asyncio.sleep(min(0.2, max(deadline - time.monotonic(), 0)))
