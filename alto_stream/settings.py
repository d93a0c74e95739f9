"""Settings read from the environment, with defaults for local development."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from alto_stream.errors import ConfigError

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "LIMIT_ENVS",
    "GroupTiming",
    "Settings",
    "bootstrap_servers",
    "env_limits",
    "project_root",
    "schemas_dir",
]

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"

_PACKAGE = Path(__file__).resolve().parent


LIMIT_ENVS = {
    "max_record_bytes": "ALTO_MAX_RECORD_BYTES",
    "max_children": "ALTO_MAX_CHILDREN",
    "max_ancestry_bytes": "ALTO_MAX_ANCESTRY_BYTES",
}
"""A worker's limits (``WorkerOptions``) a process takes from its environment.

The errors that name a limit say to raise it; a worker started from the CLI
(``worker``, ``up``) had no way to. ``push`` and the client take the first too.
"""


def env_limits() -> dict[str, int]:
    """The limits of :data:`LIMIT_ENVS` set in the environment (:class:`ConfigError` if bad)."""
    limits = {}
    for option, env in LIMIT_ENVS.items():
        text = os.environ.get(env, "").strip()
        if not text:
            continue
        if not text.isdigit() or int(text) <= 0:
            raise ConfigError(f"{env} must be a whole number > 0, got {text!r}")
        limits[option] = int(text)
    return limits


def bootstrap_servers(explicit: str | None = None) -> str:
    """The Kafka bootstrap address: ``explicit``, else ``ALTO_BOOTSTRAP_SERVERS``, else local."""
    return explicit or os.environ.get("ALTO_BOOTSTRAP_SERVERS") or DEFAULT_BOOTSTRAP


TOPICS_DIR_ENV = "ALTO_TOPICS_DIR"
"""Where an app's topic file is read from, alone, when set (see :func:`topics_dir`)."""


def _checkout() -> Path | None:
    """The repository root when running from a checkout (an editable install), else None.

    The folder above the package counts only when it holds the project's
    ``pyproject.toml``: above an installed package is ``site-packages``, where any
    distribution's top-level ``schemas/`` folder hid every built-in schema.
    """
    root = _PACKAGE.parent
    return root if (root / "pyproject.toml").is_file() and (root / "schemas").is_dir() else None


def project_root() -> Path:
    """The repository root when running from a checkout (editable install), else the package."""
    return _checkout() or _PACKAGE


def schemas_dir() -> Path:
    """Where the Avro schemas live: ``ALTO_SCHEMAS_DIR``, the checkout's, or the packaged copy."""
    env = os.environ.get("ALTO_SCHEMAS_DIR")
    if env:
        return Path(env)
    root = _checkout()
    return root / "schemas" if root is not None else _PACKAGE / "_schemas"


def topics_dir() -> Path:
    """Where built-in topic definitions live: ``ALTO_TOPICS_DIR``, the checkout's, or the package's.

    An app's own file is looked for first beside its module and in the current
    folder (:func:`alto_stream.topics.topic_file_path`), unless ``ALTO_TOPICS_DIR`` is set.
    """
    env = os.environ.get(TOPICS_DIR_ENV)
    if env:
        return Path(env)
    root = _checkout()
    if root is not None and (root / "topics").is_dir():
        return root / "topics"
    return _PACKAGE / "_topics"


def data_home() -> Path:
    """Where downloads and broker data go: ``ALTO_HOME``, else ``~/.cache/alto-stream``."""
    env = os.environ.get("ALTO_HOME")
    return Path(env) if env else Path.home() / ".cache" / "alto-stream"


@dataclass(frozen=True)
class Settings:
    """Connection settings shared by workers, clients and the CLI."""

    bootstrap_servers: str = field(default_factory=bootstrap_servers)


SESSION_TIMEOUT_ENV = "ALTO_SESSION_TIMEOUT"
HEARTBEAT_INTERVAL_ENV = "ALTO_HEARTBEAT_INTERVAL"
MAX_POLL_INTERVAL_ENV = "ALTO_MAX_POLL_INTERVAL"
INSTANCE_ID_ENV = "ALTO_GROUP_INSTANCE_ID"


@dataclass(frozen=True)
class GroupTiming:
    """How a worker's consumer keeps its group membership (durations in seconds).

    ``session_timeout``: how long the group waits for a silent member (a killed
    worker) before it hands the member's partitions to the others; Kafka refuses
    values outside the broker's ``group.min.session.timeout.ms`` (6 s by
    default) .. ``group.max.session.timeout.ms``. ``heartbeat_interval``: how
    often a member says it is alive, and learns of a rebalance (at most a third
    of the session timeout). ``max_poll_interval``: how long a member may go
    without fetching before it leaves the group. ``instance_id``: a static
    member's id (KIP-345): a member restarted with the same id gets its
    partitions back without a rebalance, if it returns within the session
    timeout; a static member does not leave the group when it stops.
    """

    session_timeout: float = 6.0
    heartbeat_interval: float = 0.5
    max_poll_interval: float = 300.0
    instance_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("session_timeout", "heartbeat_interval", "max_poll_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.heartbeat_interval * 3 > self.session_timeout:
            raise ConfigError(
                f"heartbeat_interval ({self.heartbeat_interval} s) must be at most a third of "
                f"session_timeout ({self.session_timeout} s)"
            )
        if self.instance_id is not None and not self.instance_id.strip():
            raise ConfigError("instance_id must not be empty")

    @classmethod
    def from_env(
        cls,
        *,
        session_timeout: float | None = None,
        heartbeat_interval: float | None = None,
        max_poll_interval: float | None = None,
        instance_id: str | None = None,
    ) -> GroupTiming:
        """The values given, else ``ALTO_SESSION_TIMEOUT`` and the rest, else the defaults."""
        default = cls.__dataclass_fields__
        return cls(
            session_timeout=_seconds(
                session_timeout, SESSION_TIMEOUT_ENV, default["session_timeout"].default
            ),
            heartbeat_interval=_seconds(
                heartbeat_interval, HEARTBEAT_INTERVAL_ENV, default["heartbeat_interval"].default
            ),
            max_poll_interval=_seconds(
                max_poll_interval, MAX_POLL_INTERVAL_ENV, default["max_poll_interval"].default
            ),
            instance_id=instance_id or os.environ.get(INSTANCE_ID_ENV) or None,
        )


def _seconds(explicit: float | None, env: str, default: object) -> float:
    if explicit is not None:
        return explicit
    raw = os.environ.get(env)
    if not raw:
        assert isinstance(default, float)
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{env} must be a number of seconds, got {raw!r}") from None
