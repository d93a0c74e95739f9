"""Settings read from the environment, with defaults for local development."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DEFAULT_BOOTSTRAP", "Settings", "bootstrap_servers", "project_root", "schemas_dir"]

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"

_PACKAGE = Path(__file__).resolve().parent


def bootstrap_servers(explicit: str | None = None) -> str:
    """The Kafka bootstrap address: ``explicit``, else ``ALTO_BOOTSTRAP_SERVERS``, else local."""
    return explicit or os.environ.get("ALTO_BOOTSTRAP_SERVERS") or DEFAULT_BOOTSTRAP


def project_root() -> Path:
    """The repository root when running from a checkout (editable install), else the package."""
    candidate = _PACKAGE.parent
    if (candidate / "schemas").is_dir():
        return candidate
    return _PACKAGE


def schemas_dir() -> Path:
    """Where the Avro schemas live: ``ALTO_SCHEMAS_DIR``, the checkout's, or the packaged copy."""
    env = os.environ.get("ALTO_SCHEMAS_DIR")
    if env:
        return Path(env)
    root = _PACKAGE.parent / "schemas"
    return root if root.is_dir() else _PACKAGE / "_schemas"


def topics_dir() -> Path:
    """Where topic definitions live: ``ALTO_TOPICS_DIR``, the checkout's, or the packaged copy."""
    env = os.environ.get("ALTO_TOPICS_DIR")
    if env:
        return Path(env)
    root = _PACKAGE.parent / "topics"
    return root if root.is_dir() else _PACKAGE / "_topics"


def data_home() -> Path:
    """Where downloads and broker data go: ``ALTO_HOME``, else ``~/.cache/alto-stream``."""
    env = os.environ.get("ALTO_HOME")
    return Path(env) if env else Path.home() / ".cache" / "alto-stream"


@dataclass(frozen=True)
class Settings:
    """Connection settings shared by workers, clients and the CLI."""

    bootstrap_servers: str = field(default_factory=bootstrap_servers)
