"""Topic definitions: ``topics/<app>.toml`` read into :class:`TopicSpec` values.

The runtime derives an app's topic names from its topology; the app's topic
file sets defaults for all of them and overrides for some::

    [defaults]
    partitions = 3
    replication = 1
    configs = { "retention.ms" = "604800000" }

    [topics."docs.input"]
    partitions = 6
    value_schema = "alto.Query"

    [topics."docs.agg.changelog"]
    cleanup_policy = "compact"
    configs = { "min.compaction.lag.ms" = "0" }

What the file says about a topic wins over what the runtime suggests (its
value schema, its cleanup policy), which wins over the defaults.
"""

from __future__ import annotations

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
    "CLEANUP_POLICIES",
    "DEFAULT_PARTITIONS",
    "DEFAULT_REPLICATION",
    "TopicFile",
    "TopicSpec",
    "check_against_schemas",
    "load_all_topic_files",
    "load_app_topics",
    "load_topic_file",
]

CLEANUP_POLICIES = ("delete", "compact", "compact,delete")
"""The Kafka cleanup policies a topic may have."""
DEFAULT_PARTITIONS = 3
"""Partitions of a topic nobody configured."""
DEFAULT_REPLICATION = 1
"""Replication factor of a topic nobody configured (one local broker)."""

_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
_FILE_KEYS = frozenset({"defaults", "topics"})
_DEFAULT_KEYS = frozenset({"partitions", "replication", "configs"})
_TOPIC_KEYS = frozenset({"partitions", "replication", "cleanup_policy", "value_schema", "configs"})


@dataclass(frozen=True)
class TopicSpec:
    """What a topic must look like: partitions, replication, cleanup policy, value schema.

    ``configs`` are further Kafka topic configs (strings); ``cleanup.policy`` is
    set through ``cleanup_policy`` only. :class:`ConfigError` when invalid.
    """

    name: str
    partitions: int = DEFAULT_PARTITIONS
    replication: int = DEFAULT_REPLICATION
    cleanup_policy: str = "delete"
    value_schema: str | None = None
    configs: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _TOPIC_NAME.fullmatch(self.name) or self.name in (".", ".."):
            raise ConfigError(
                f"bad topic name {self.name!r}: expected 1-249 characters of "
                "letters, digits, '.', '_' and '-'"
            )
        _positive(self.partitions, f"topic {self.name}: partitions")
        _positive(self.replication, f"topic {self.name}: replication")
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
        if "cleanup.policy" in self.configs:
            raise ConfigError(
                f"topic {self.name}: set cleanup_policy, not configs['cleanup.policy']"
            )
        object.__setattr__(self, "configs", _configs(self.configs, f"topic {self.name}"))

    def kafka_configs(self) -> dict[str, str]:
        """The Kafka topic configs, ``cleanup.policy`` included."""
        return {**self.configs, "cleanup.policy": self.cleanup_policy}


@dataclass(frozen=True)
class TopicFile:
    """An app's topic file: defaults for every topic and per-topic overrides.

    ``overrides`` holds, per declared topic, only the keys its table sets.
    ``path`` is None when the app has no file (all defaults).
    """

    path: Path | None = None
    partitions: int = DEFAULT_PARTITIONS
    replication: int = DEFAULT_REPLICATION
    configs: Mapping[str, str] = field(default_factory=dict)
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def spec(
        self, name: str, *, value_schema: str | None = None, cleanup_policy: str | None = None
    ) -> TopicSpec:
        """The spec of topic ``name``: the file's settings, else the hints, else the defaults."""
        override = self.overrides.get(name, {})
        return TopicSpec(
            name=name,
            partitions=override.get("partitions", self.partitions),
            replication=override.get("replication", self.replication),
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
        replication=_positive(
            defaults.get("replication", DEFAULT_REPLICATION), f"{path} replication"
        ),
        configs=_configs(defaults.get("configs", {}), f"{path} [defaults]"),
        overrides=overrides,
    )
    try:
        topic_file.declared()  # validates every declared topic now, not when first used
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return topic_file


def load_app_topics(app_name: str, directory: Path | None = None) -> TopicFile:
    """The topic file of app ``app_name`` (``<directory>/<app>.toml``); all defaults if none."""
    if not app_name or "/" in app_name or "\\" in app_name or app_name.startswith("."):
        raise ConfigError(f"bad app name {app_name!r}: expected a plain name like 'docs'")
    path = (directory if directory is not None else settings.topics_dir()) / f"{app_name}.toml"
    return load_topic_file(path) if path.is_file() else TopicFile()


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
