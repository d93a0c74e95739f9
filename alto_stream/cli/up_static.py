"""``up --static-membership``: each worker's group instance id, APP.STAGE.HOST.REPLICA.

:func:`static_id` makes the ids; :func:`host_id_of` is their HOST part
(``--host-id``, else this machine's host name); :func:`hold_instance_ids`
refuses a second ``up`` of one app with one host id on this machine, whose
workers would take each other's place; :func:`without_instance_id` drops the
one id ``ALTO_GROUP_INSTANCE_ID`` gives (one worker's, never every worker's).
The command itself is :mod:`alto_stream.cli.up_cmd`.
"""

from __future__ import annotations

import re
from typing import IO, TYPE_CHECKING

from alto_stream.cli._opsutil import err

if TYPE_CHECKING:
    from alto_stream.settings import GroupTiming

__all__ = ["hold_instance_ids", "host_id_of", "static_id", "without_instance_id"]


def static_id(app: str, host: str, stage: str, replica: int) -> str:
    """The group instance id `up --static-membership` gives a worker: APP.STAGE.HOST.REPLICA.

    The host keeps the ids of two `up` of one app on two hosts apart (the same ids
    made each pair of workers take each other's place); the rest keeps them the
    same across restarts of one host's `up`, which is the point of static ids.
    """
    return f"{app}.{stage}.{host}.{replica}"


def without_instance_id(timing: GroupTiming) -> GroupTiming:
    """``timing`` without ``ALTO_GROUP_INSTANCE_ID``: one worker's id, never every worker's."""
    import dataclasses

    if timing.instance_id is None:
        return timing
    err.print(
        "[yellow]ALTO_GROUP_INSTANCE_ID is one worker's id: up ignores it "
        "(--static-membership gives each worker its own)"
    )
    return dataclasses.replace(timing, instance_id=None)


_HOST_ID = re.compile(r"[A-Za-z0-9._-]+")
"""What Kafka accepts in a group instance id (as in a topic name)."""


def host_id_of(given: str | None) -> str:
    """``--host-id``, else this machine's host name (characters Kafka refuses made ``-``)."""
    import socket

    from alto_stream.errors import ConfigError

    if given is None:
        return re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()) or "host"
    if not _HOST_ID.fullmatch(given):
        raise ConfigError(
            f"bad --host-id {given!r}: a group instance id takes letters, digits, '.', '_' "
            "and '-' only; fix: a --host-id made of those"
        )
    return given


def hold_instance_ids(app: str, host: str) -> IO[bytes]:
    """A lock on this host's static ids of ``app``, held while the returned file is open.

    Two `up --static-membership` of one app with one host id give their workers
    the same ids, and each pair of workers takes the other's place until one
    stops: refused here, before any worker starts, when both run on this machine
    (with the same ALTO_HOME).
    """
    import fcntl

    from alto_stream.errors import ConfigError
    from alto_stream.settings import data_home

    path = data_home() / "static-ids" / f"{app}.{host}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.open("a+b")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise ConfigError(
            f"another `up --static-membership` of app {app!r} on this machine gives its "
            f"workers the group instance ids {app}.STAGE.{host}.N; two workers with one id "
            "take each other's place; fix: --host-id NAME, one of its own for each `up`"
        ) from None
    return lock
