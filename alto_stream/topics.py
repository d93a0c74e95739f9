"""Topic definitions: ``topics/<app>.toml`` read into :class:`TopicSpec` values.

The runtime derives an app's topic names from its topology; the app's topic
file sets defaults for all of them and overrides for some::

    [defaults]
    partitions = 3
    replication = 3             # default: the cluster's size, up to 3
    min_insync_replicas = 2     # default: 2 where replication >= 3, else the broker's
    configs = { "retention.ms" = "604800000" }

    [topics."docs.input"]
    partitions = 6
    value_schema = "alto.Query"

    [topics."docs.agg.changelog"]
    cleanup_policy = "compact"
    configs = { "min.compaction.lag.ms" = "0" }

What the file says about a topic wins over what the runtime suggests (its
value schema, its cleanup policy), which wins over the defaults.

Replication left unset (None) is decided when a topic is created: the number
of brokers, up to 3, and then ``min.insync.replicas`` 2 where it is 3 or more,
so that an acknowledged write survives the loss of a broker while one broker
may be down (see :meth:`TopicSpec.for_cluster`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alto_stream import settings
from alto_stream.errors import ConfigError

if TYPE_CHECKING:
    from alto_stream.codec import SchemaRegistry

__all__ = [
    "CHANGELOG_CONFIGS",
    "CLEANUP_POLICIES",
    "DEFAULT_PARTITIONS",
    "DEFAULT_REPLICATION",
    "MAX_DEFAULT_REPLICATION",
    "TopicFile",
    "TopicSpec",
    "check_against_schemas",
    "load_all_topic_files",
    "load_app_topics",
    "load_topic_file",
    "topic_file_path",
]

CLEANUP_POLICIES = ("delete", "compact", "compact,delete")
"""The Kafka cleanup policies a topic may have."""
DEFAULT_PARTITIONS = 3
"""Partitions of a topic nobody configured."""
DEFAULT_REPLICATION: int | None = None
"""Replication factor of a topic nobody configured: None, the cluster's size up to 3."""
MAX_DEFAULT_REPLICATION = 3
"""The most replicas a topic gets when nobody configured its replication."""
CHANGELOG_CONFIGS: Mapping[str, str] = {
    "segment.ms": "3600000",
    "min.cleanable.dirty.ratio": "0.1",
    "delete.retention.ms": "3600000",
    "min.compaction.lag.ms": "0",
}
"""Kafka configs of an aggregate's changelog nobody configured: compaction keeps it near the
live state. Kafka never compacts the active segment, which rolls after ``segment.ms`` (7 days
by default: a soak's changelog held 112,345 records, 48,147 of them tombstones, after 35 min
at 2 queries/s, and every take-over re-read them all); rolled hourly, the cleaner reaches a
record an hour after it was written, and runs once 10% of the log is dirty (Kafka: 50%). A
tombstone stays an hour after the cleaning that leaves it (Kafka: a day), time enough for a
restore under way to read it. A topic file's ``configs`` win over these."""
_DEFAULT_MIN_INSYNC = 2
"""``min.insync.replicas`` of a topic with 3+ replicas whose min.insync nobody configured."""

_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
_FILE_KEYS = frozenset({"defaults", "topics"})
_DEFAULT_KEYS = frozenset({"partitions", "replication", "min_insync_replicas", "configs"})
_TOPIC_KEYS = frozenset(
    {
        "partitions",
        "replication",
        "min_insync_replicas",
        "cleanup_policy",
        "value_schema",
        "configs",
    }
)


@dataclass(frozen=True)
class TopicSpec:
    """What a topic must look like: partitions, replication, cleanup policy, value schema.

    ``configs`` are further Kafka topic configs (strings); ``cleanup.policy`` is
    set through ``cleanup_policy`` only, ``min.insync.replicas`` through
    ``min_insync_replicas`` only. ``replication`` None: the cluster's size up to
    3, decided by :meth:`for_cluster`. :class:`ConfigError` when invalid.
    """

    name: str
    partitions: int = DEFAULT_PARTITIONS
    replication: int | None = DEFAULT_REPLICATION
    cleanup_policy: str = "delete"
    value_schema: str | None = None
    configs: Mapping[str, str] = field(default_factory=dict)
    min_insync_replicas: int | None = None

    def __post_init__(self) -> None:
        if not _TOPIC_NAME.fullmatch(self.name) or self.name in (".", ".."):
            raise ConfigError(
                f"bad topic name {self.name!r}: expected 1-249 characters of "
                "letters, digits, '.', '_' and '-'"
            )
        _positive(self.partitions, f"topic {self.name}: partitions")
        if self.replication is not None:
            _positive(self.replication, f"topic {self.name}: replication")
        if self.min_insync_replicas is not None:
            _positive(self.min_insync_replicas, f"topic {self.name}: min_insync_replicas")
            if self.replication is not None and self.min_insync_replicas > self.replication:
                raise ConfigError(
                    f"topic {self.name}: min_insync_replicas ({self.min_insync_replicas}) "
                    f"exceeds replication ({self.replication}): no write could ever succeed"
                )
        policy = ",".join(sorted(p.strip() for p in str(self.cleanup_policy).split(",")))
        if policy not in CLEANUP_POLICIES:
            raise ConfigError(
                f"topic {self.name}: cleanup_policy must be one of {', '.join(CLEANUP_POLICIES)}, "
                f"got {self.cleanup_policy!r}"
            )
        object.__setattr__(self, "cleanup_policy", policy)
        if self.value_schema is not None and not isinstance(self.value_schema, str):
            raise ConfigError(
                f"topic {self.name}: value_schema must be a schema name, got {self.value_schema!r}"
            )
        for key, use in (
            ("cleanup.policy", "cleanup_policy"),
            ("min.insync.replicas", "min_insync_replicas"),
        ):
            if key in self.configs:
                raise ConfigError(f"topic {self.name}: set {use}, not configs['{key}']")
        object.__setattr__(self, "configs", _configs(self.configs, f"topic {self.name}"))

    def kafka_configs(self) -> dict[str, str]:
        """The Kafka topic configs, ``cleanup.policy`` (and ``min.insync.replicas``) included."""
        configs = {**self.configs, "cleanup.policy": self.cleanup_policy}
        if self.min_insync_replicas is not None:
            configs["min.insync.replicas"] = str(self.min_insync_replicas)
        return configs

    def for_cluster(self, brokers: int) -> TopicSpec:
        """This spec with what it leaves to the cluster decided, for ``brokers`` brokers.

        Replication unset: ``min(brokers, 3)``. ``min.insync.replicas`` unset:
        2 where replication is 3 or more (a write is acknowledged by two
        replicas, and one broker may be down), else the broker's default.
        :class:`ConfigError` when the cluster has fewer brokers than replicas.
        """
        replication = self.replication
        if replication is None:
            replication = max(1, min(brokers, MAX_DEFAULT_REPLICATION))
        if replication > brokers:
            raise ConfigError(
                f"topic {self.name}: replication {replication} needs {replication} brokers, "
                f"the cluster has {brokers}; fix: a smaller replication (topic file, "
                "--replication) or more brokers"
            )
        min_insync = self.min_insync_replicas
        if min_insync is None and replication >= MAX_DEFAULT_REPLICATION:
            min_insync = _DEFAULT_MIN_INSYNC
        if min_insync is not None and min_insync > replication:
            raise ConfigError(
                f"topic {self.name}: min_insync_replicas ({min_insync}) exceeds replication "
                f"({replication}): no write could ever succeed"
            )
        return dataclasses.replace(self, replication=replication, min_insync_replicas=min_insync)


@dataclass(frozen=True)
class TopicFile:
    """An app's topic file: defaults for every topic and per-topic overrides.

    ``overrides`` holds, per declared topic, only the keys its table sets.
    ``path`` is None when the app has no file (all defaults).
    """

    path: Path | None = None
    partitions: int = DEFAULT_PARTITIONS
    replication: int | None = DEFAULT_REPLICATION
    configs: Mapping[str, str] = field(default_factory=dict)
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    min_insync_replicas: int | None = None

    def spec(
        self, name: str, *, value_schema: str | None = None, cleanup_policy: str | None = None
    ) -> TopicSpec:
        """The spec of topic ``name``: the file's settings, else the hints, else the defaults."""
        override = self.overrides.get(name, {})
        return TopicSpec(
            name=name,
            partitions=override.get("partitions", self.partitions),
            replication=override.get("replication", self.replication),
            min_insync_replicas=override.get("min_insync_replicas", self.min_insync_replicas),
            cleanup_policy=override.get("cleanup_policy", cleanup_policy or "delete"),
            value_schema=override.get("value_schema", value_schema),
            configs={**self.configs, **override.get("configs", {})},
        )

    def declared(self) -> list[TopicSpec]:
        """The specs of the topics the file names, in file order."""
        return [self.spec(name) for name in self.overrides]


def load_topic_file(path: Path) -> TopicFile:
    """Read and validate one topic file; :class:`ConfigError` naming the file and the problem."""
    try:
        with Path(path).open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read a topic file: {exc}") from exc
    _check_keys(data, _FILE_KEYS, str(path))
    defaults = _table(data.get("defaults", {}), f"{path} [defaults]")
    _check_keys(defaults, _DEFAULT_KEYS, f"{path} [defaults]")
    topics = _table(data.get("topics", {}), f"{path} [topics]")
    overrides: dict[str, dict[str, Any]] = {}
    for name, table in topics.items():
        where = f'{path} [topics."{name}"]'
        override = dict(_table(table, where))
        _check_keys(override, _TOPIC_KEYS, where)
        if "configs" in override:
            override["configs"] = _configs(override["configs"], where)
        overrides[name] = override
    topic_file = TopicFile(
        path=Path(path),
        partitions=_positive(defaults.get("partitions", DEFAULT_PARTITIONS), f"{path} partitions"),
        replication=_optional_positive(defaults.get("replication"), f"{path} replication"),
        min_insync_replicas=_optional_positive(
            defaults.get("min_insync_replicas"), f"{path} min_insync_replicas"
        ),
        configs=_configs(defaults.get("configs", {}), f"{path} [defaults]"),
        overrides=overrides,
    )
    try:
        topic_file.declared()  # validates every declared topic now, not when first used
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return topic_file


def topic_file_path(app_name: str, app_home: Path | None = None) -> Path:
    """Where app ``app_name``'s topic file is read from (or would be: it may not exist).

    With ``ALTO_TOPICS_DIR`` set, ``<that folder>/<app>.toml`` alone. Otherwise the
    first ``topics/<app>.toml`` that exists beside the app's module (``app_home``:
    :attr:`App.folder`), then in the current folder, then in
    :func:`settings.topics_dir` (a checkout's ``topics/``, else the package's). Before
    2026-12-03 only the last was read: a new user's ``topics/<app>.toml`` next to an
    app outside the checkout was ignored without a word.
    """
    name = _file_name(app_name)
    if not os.environ.get(settings.TOPICS_DIR_ENV):
        for folder in (app_home, Path.cwd()):
            if folder is not None and (folder / "topics" / name).is_file():
                return folder / "topics" / name
    return settings.topics_dir() / name


def load_app_topics(
    app_name: str, directory: Path | None = None, *, app_home: Path | None = None
) -> TopicFile:
    """The topic file of app ``app_name``; all defaults if none.

    ``<directory>/<app>.toml`` when ``directory`` is given, else :func:`topic_file_path`.
    """
    if directory is not None:
        path = directory / _file_name(app_name)
    else:
        path = topic_file_path(app_name, app_home)
    return load_topic_file(path) if path.is_file() else TopicFile()


def _file_name(app_name: str) -> str:
    if not app_name or "/" in app_name or "\\" in app_name or app_name.startswith("."):
        raise ConfigError(f"bad app name {app_name!r}: expected a plain name like 'docs'")
    return f"{app_name}.toml"


def load_all_topic_files(directory: Path | None = None) -> dict[str, TopicFile]:
    """Every topic file of ``directory`` (default :func:`settings.topics_dir`), by app name."""
    folder = directory if directory is not None else settings.topics_dir()
    return {path.stem: load_topic_file(path) for path in sorted(folder.glob("*.toml"))}


def check_against_schemas(specs: Iterable[TopicSpec], registry: SchemaRegistry) -> list[str]:
    """Problems (empty when none): value schemas the registry lacks, topics declared twice."""
    known = set(registry.names())
    problems: list[str] = []
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            problems.append(f"topic {spec.name} is declared twice")
        seen.add(spec.name)
        if spec.value_schema is not None and spec.value_schema not in known:
            problems.append(
                f"topic {spec.name}: value schema {spec.value_schema!r} is not in the registry "
                f"(known: {', '.join(sorted(known))}); fix: add {spec.value_schema}.avsc to "
                "schemas/ or correct the name"
            )
    return problems


def _positive(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be an integer >= 1, got {value!r}")
    return value


def _optional_positive(value: Any, what: str) -> int | None:
    return None if value is None else _positive(value, what)


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table, got {value!r}")
    return value


def _check_keys(table: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}: expected only "
            f"{', '.join(sorted(allowed))}"
        )


def _configs(value: Any, where: str) -> dict[str, str]:
    """Kafka configs as strings (TOML numbers and booleans accepted)."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: configs must be a table of Kafka configs, got {value!r}")
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            out[str(key)] = "true" if item else "false"
        elif isinstance(item, str | int | float):
            out[str(key)] = str(item)
        else:
            raise ConfigError(f"{where}: config {key} must be a string or number, got {item!r}")
    return out
