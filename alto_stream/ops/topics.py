"""An app's topics: what they must be, and how the cluster's compare (``topics apply``).

The specs come from the topology (every input, output, dead-letter and
changelog topic) with ``topics/<app>.toml`` applied on top; a changelog always
gets its aggregator's input partition count. :func:`apply_topics` creates what
is missing, sets on an existing topic the configs its spec says otherwise
(``segment.ms`` and the like: safe to change on a live topic; Kafka applies
them from then on), and reports how else it differs: Kafka cannot shrink
partitions or rewrite data, and a cleanup policy changed on a live topic
(a changelog compacted, or deleted by retention) changes what it keeps, so
those differences are reported, never "fixed". :func:`delete_app_topics`
removes an app's topics once its workers are stopped (``topics delete``).
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from alto_stream.app import Topology
from alto_stream.errors import ConfigError
from alto_stream.runtime.kafka import KafkaOps, TopicState
from alto_stream.topics import TopicSpec, load_app_topics

__all__ = [
    "TopicCheck",
    "app_topic_specs",
    "apply_topics",
    "compare",
    "config_changes",
    "delete_app_topics",
    "describe_topic",
    "left_behind",
    "left_behind_note",
    "missing_topics",
    "require_topics",
]

Status = Literal["created", "updated", "ok", "differs", "missing"]


@dataclass(frozen=True)
class TopicCheck:
    """One topic of an app: its spec, what the cluster had, and the verdict."""

    spec: TopicSpec
    state: TopicState | None
    status: Status
    differences: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "topic": self.spec.name,
            "status": self.status,
            "partitions": self.spec.partitions,
            "replication": self.spec.replication,
            "min_insync_replicas": self.spec.min_insync_replicas,
            "cleanup_policy": self.spec.cleanup_policy,
            "value_schema": self.spec.value_schema,
            "differences": list(self.differences),
        }


def app_topic_specs(
    topology: Topology,
    *,
    partitions: int | None = None,
    replication: int | None = None,
    min_insync_replicas: int | None = None,
    topics_dir: Path | None = None,
    app_home: Path | None = None,
) -> list[TopicSpec]:
    """Every topic of the app as a spec.

    Per-topic settings of the app's ``topics/<app>.toml`` win (where it is
    looked for: :func:`~alto_stream.topics.topic_file_path`, ``app_home`` the
    app's folder); ``partitions``, ``replication`` and ``min_insync_replicas``
    replace the file's defaults for the topics it does not set. Replication
    left unset everywhere is decided when the topics are applied
    (:meth:`TopicSpec.for_cluster`).
    """
    topic_file = load_app_topics(topology.app, topics_dir, app_home=app_home)
    topic_file = dataclasses.replace(
        topic_file,
        partitions=partitions or topic_file.partitions,
        replication=replication or topic_file.replication,
        min_insync_replicas=min_insync_replicas or topic_file.min_insync_replicas,
    )
    hints = topology.topic_specs(partitions=topic_file.partitions)
    overrides = {
        s.name: topic_file.spec(
            s.name, value_schema=s.value_schema, cleanup_policy=s.cleanup_policy
        )
        for s in hints
    }
    # Every topic has its override (the file's settings): the topology only orders
    # them and gives changelogs their aggregator's partition count.
    return topology.topic_specs(partitions=topic_file.partitions, overrides=overrides)


def config_changes(spec: TopicSpec, state: TopicState) -> dict[str, str]:
    """The configs of ``spec`` an existing topic has otherwise, but its cleanup policy."""
    return {
        key: want
        for key, want in spec.kafka_configs().items()
        if key != "cleanup.policy" and (has := state.configs.get(key)) is not None and has != want
    }


def compare(spec: TopicSpec, state: TopicState) -> tuple[str, ...]:
    """How an existing topic differs from its spec (empty when it fits)."""
    found = []
    if state.partitions != spec.partitions:
        found.append(f"partitions: want {spec.partitions}, has {state.partitions}")
    if spec.replication is not None and state.replication != spec.replication:
        found.append(f"replication: want {spec.replication}, has {state.replication}")
    for key, want in sorted(spec.kafka_configs().items()):
        has = state.configs.get(key)
        if key == "cleanup.policy" and has is not None:
            has = ",".join(sorted(p.strip() for p in has.split(",")))
        if has is not None and has != want:
            found.append(f"{key}: want {want}, has {has}")
    return tuple(found)


async def apply_topics(
    ops: KafkaOps, specs: Sequence[TopicSpec], *, create: bool = True
) -> list[TopicCheck]:
    """Create the missing topics and set the others' configs (unless ``create`` is False).

    Each check says what was done (``created``, ``updated``: its differences say
    which configs, from what) or how the topic still differs from its spec.

    What the specs leave to the cluster (replication, min.insync.replicas) is
    decided for its broker count first; the checks hold the decided specs.
    """
    brokers = await ops.broker_count()
    specs = [spec.for_cluster(brokers) for spec in specs]
    states = await ops.describe_topics([s.name for s in specs])
    missing = [s for s in specs if s.name not in states]
    if create and missing:
        await ops.transport.ensure_topics(missing)
    checks = []
    for spec in specs:
        state = states.get(spec.name)
        if state is None:
            checks.append(TopicCheck(spec, None, "created" if create else "missing"))
            continue
        changes = config_changes(spec, state) if create else {}
        done = tuple(
            f"{k}: set to {v} (was {state.configs[k]})" for k, v in sorted(changes.items())
        )
        if changes:
            await ops.alter_topic_configs(spec.name, changes)
            state = dataclasses.replace(state, configs={**state.configs, **changes})
        differences = compare(spec, state)
        status: Status = "differs" if differences else "updated" if changes else "ok"
        checks.append(TopicCheck(spec, state, status, differences + done))
    return checks


async def missing_topics(ops: KafkaOps, names: Sequence[str]) -> list[str]:
    """Which of ``names`` do not exist on the cluster."""
    existing = set(await ops.list_topics())
    return [name for name in names if name not in existing]


async def describe_topic(ops: KafkaOps, name: str) -> TopicState:
    """The state of topic ``name``; :class:`ConfigError` naming similar topics when unknown."""
    states = await ops.describe_topics([name])
    if name in states:
        return states[name]
    await ops.raise_if_denied([name])  # ACLs hide a topic as if it did not exist
    known = await ops.list_topics()
    stem = name.split(".")[0]
    similar = [t for t in known if t.startswith(stem)][:10]
    raise ConfigError(
        f"unknown topic {name!r}"
        + (f"; similar: {', '.join(similar)}" if similar else f" ({len(known)} topics exist)")
        + "; fix: `alto-stream topics list`, or create the app's topics with `topics apply`"
    )


async def require_topics(ops: KafkaOps, names: Sequence[str], *, app_ref: str = "APP") -> None:
    """:class:`ConfigError` naming those of ``names`` that do not exist (and the fix)."""
    missing = await missing_topics(ops, names)
    if missing:
        await ops.raise_if_denied(missing)  # ACLs hide a topic as if it did not exist
        raise ConfigError(
            f"unknown topic(s) {', '.join(missing)}; fix: `alto-stream topics list` shows the "
            f"topics there are, `alto-stream topics apply {shlex.quote(app_ref)}` creates an "
            "app's topics"
        )


async def running_workers(ops: KafkaOps, topology: Topology) -> str | None:
    """Which of the app's stages have workers in their groups, in words; None if none."""
    groups = [plan.group for plan in topology.stages.values()]
    running = {g: n for g, n in (await ops.group_members(groups)).items() if n}
    if not running:
        return None
    members = (f"group {g}: {n} member{'s' * (n > 1)}" for g, n in sorted(running.items()))
    return f"workers of app {topology.app} are running ({', '.join(members)})"


async def left_behind(ops: KafkaOps, topology: Topology) -> list[str]:
    """Topics named for the app (``<app>.``) that none of its stages uses now, sorted.

    A stage removed or renamed leaves its output, dead-letter and changelog topics
    behind, with what they hold; an app's name holds no dot, so a topic under its
    prefix is one of its own, of an earlier version.
    """
    return _left_among(await ops.list_topics(), topology)


def _left_among(existing: Iterable[str], topology: Topology) -> list[str]:
    """The names of ``existing`` that :func:`left_behind` means, sorted."""
    ours = set(topology.topic_names())
    prefix = f"{topology.app}."
    return sorted(n for n in existing if n.startswith(prefix) and n not in ours)


def left_behind_note(app: str, names: Sequence[str], app_ref: str) -> str:
    """What ``topics apply`` and ``up`` say of the topics :func:`left_behind` found."""
    return (
        f"{len(names)} topic(s) of app {app} that none of its stages uses now (a stage removed "
        f"or renamed): {', '.join(names)}; nothing reads what they hold (see docs/operations.md, "
        f"'Upgrading an app'); `alto-stream topics delete {shlex.quote(app_ref)}` removes them "
        "with the app's"
    )


async def delete_app_topics(
    ops: KafkaOps, topology: Topology, *, dry_run: bool = False, force: bool = False
) -> list[str]:
    """Delete the app's topics that exist (all but with ``dry_run``); return their names.

    Those of an earlier version of the app (:func:`left_behind`) go too, last.

    Refused (:class:`ConfigError`) while a stage's group has members, its workers
    running, unless ``force``: they would fail on the vanished topics, or create
    them again. Kafka drops the groups' committed offsets of deleted topics, and
    a group left with none expires, so the groups need no deleting of their own.
    """
    if not force and (running := await running_workers(ops, topology)):
        raise ConfigError(
            f"{running}; fix: stop them first (Ctrl-C its `up`; a stopped worker leaves its "
            "group at once, a killed one after its session time-out), or --force"
        )
    existing = set(await ops.list_topics())
    present = [name for name in topology.topic_names() if name in existing]
    present += _left_among(existing, topology)
    if dry_run or not present:
        return present
    return await ops.delete_topics(present)
