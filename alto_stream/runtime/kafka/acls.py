"""The ACLs an app needs, made by ``alto-stream topics grant`` (prefixed, per user).

:func:`grant` makes them over an admin client (for
:meth:`~alto_stream.runtime.kafka.ops.KafkaOps.grant`); each ACL made is a :class:`Grant`.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import ClusterAuthorizationFailedError, for_code

from alto_stream.errors import ConfigError, TransportError
from alto_stream.runtime.kafka.common import wrapped
from alto_stream.security import Security

__all__ = ["Grant", "grant"]

_TOPIC, _GROUP, _TRANSACTIONAL_ID = 2, 3, 5  # Kafka's ACL resource types
_READ, _WRITE, _CREATE, _DESCRIBE, _DESCRIBE_CONFIGS = 3, 4, 5, 8, 10  # ACL operations
_PREFIXED, _ALLOW = 4, 3
_SECURITY_DISABLED = 54

_APP_ACLS = (
    ("topic", _TOPIC, (("Read", _READ), ("Write", _WRITE), ("Create", _CREATE),
                       ("Describe", _DESCRIBE), ("DescribeConfigs", _DESCRIBE_CONFIGS))),
    ("group", _GROUP, (("Read", _READ), ("Describe", _DESCRIBE))),
    ("transactional-id", _TRANSACTIONAL_ID, (("Write", _WRITE), ("Describe", _DESCRIBE))),
)  # fmt: skip
"""What an app's workers and the CLI ask of names starting with the app's prefix: its
topics (created by ``topics apply``), its stages' groups, and the transactional ids
of the transactional mode (``<group>.<topic>.<partition>``)."""


@dataclass(frozen=True)
class Grant:
    """One ACL made: allow ``user`` ``operation`` on ``resource`` names starting with ``prefix``."""

    user: str
    resource: str
    prefix: str
    operation: str


async def grant(
    admin: AIOKafkaAdminClient, security: Security, user: str, prefix: str
) -> list[Grant]:
    """Allow ``user`` what an app's names starting with ``prefix`` need, over ``admin``.

    ``admin`` is started here and closed in every case (see
    :meth:`~alto_stream.runtime.kafka.ops.KafkaOps.grant`).
    """
    from aiokafka.protocol.admin import CreateAclsRequest

    made = []
    async with wrapped(f"create ACLs for {user}", security):
        try:
            await admin.start()
            for resource, kind, operations in _APP_ACLS:
                for name, operation in operations:
                    request = CreateAclsRequest(
                        kind, prefix, _PREFIXED, f"User:{user}", "*", operation, _ALLOW
                    )
                    # aiokafka's admin client has no create_acls: its request path.
                    response = await admin._send_request(request)
                    for code, message in response.creation_responses:
                        _check_acl(code, message, resource, prefix)
                    made.append(Grant(user, resource, prefix, name))
        finally:
            await admin.close()
    return made


def _check_acl(code: int, message: str | None, resource: str, prefix: str) -> None:
    """Raise for a CreateAcls error (0: made)."""
    if code == 0:
        return
    if code == _SECURITY_DISABLED:
        raise ConfigError(
            "the cluster has no authorizer, so no ACLs to grant (every user may do "
            "everything); fix: start a broker with ACLs (`alto-stream broker start "
            "--security ... --acl`)"
        )
    error = for_code(code)(message or "")
    if isinstance(error, ClusterAuthorizationFailedError):
        raise error  # wrapped makes it the AccessError naming who was refused
    raise TransportError(f"Kafka refused an ACL on {resource} {prefix}*: {error!r}")
