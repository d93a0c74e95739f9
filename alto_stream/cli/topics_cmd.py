"""``alto-stream topics``: create, check or delete an app's topics; list and describe topics."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from alto_stream.cli._opsutil import Bootstrap, JsonFlag, connect, emit_json, err, handled, out

__all__ = ["app"]

app = typer.Typer(
    help="Create, check or delete an app's topics; list and describe topics.",
    no_args_is_help=True,
)

_STYLE = {
    "ok": "green",
    "created": "cyan",
    "updated": "cyan",
    "differs": "yellow",
    "missing": "red",
}
_SHOWN_CONFIGS = (
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "min.compaction.lag.ms",
    "min.cleanable.dirty.ratio",
    "delete.retention.ms",
    "segment.ms",
    "max.message.bytes",
    "min.insync.replicas",
)


@app.command()
def apply(
    app_ref: Annotated[str, typer.Argument(metavar="APP", help="The app, as module:attribute.")],
    partitions: Annotated[
        int | None,
        typer.Option(min=1, help="Partitions of topics the app's topic file does not set."),
    ] = None,
    replication: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Replication of topics the app's topic file does not set "
            "(default: the cluster's broker count, up to 3).",
        ),
    ] = None,
    min_insync_replicas: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="min.insync.replicas of topics the app's topic file does not set "
            "(default: 2 for topics with 3+ replicas, else the broker's).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only compare: create nothing.")
    ] = False,
    bootstrap: Bootstrap = None,
    as_json: JsonFlag = False,
) -> None:
    """Create the app's missing topics, set existing ones' configs, report other differences.

    A config an existing topic has otherwise (segment.ms, retention.ms ...) is set
    (status "updated"; not with --dry-run). Exit status 1 when a topic differs in
    what cannot be changed in place (partitions, replication, cleanup policy: fix
    it by hand or use new topic names), or is missing with --dry-run.
    """
    from alto_stream.ops.loading import keep_schema_versions, load_topology
    from alto_stream.ops.topics import (
        app_topic_specs,
        apply_topics,
        left_behind,
        left_behind_note,
    )
    from alto_stream.runtime.kafka import KafkaOps

    with handled():
        loaded, topology = load_topology(app_ref)
        if not dry_run:
            keep_schema_versions(loaded)
        specs = app_topic_specs(
            topology,
            partitions=partitions,
            replication=replication,
            min_insync_replicas=min_insync_replicas,
            app_home=loaded.folder,
        )
        ops = KafkaOps(connect(bootstrap))
        if line := _settings_line(topology.app, loaded.folder):
            err.print(line, markup=False)
        checks = asyncio.run(apply_topics(ops, specs, create=not dry_run))
        old = asyncio.run(left_behind(ops, topology))
        if old:
            err.print(f"[yellow]{escape(left_behind_note(topology.app, old, app_ref))}[/]")
    if as_json:
        emit_json([c.to_dict() for c in checks])
    else:
        table = Table(title=f"topics of app {topology.app}")
        table.add_column("topic", overflow="fold")
        for column in ("partitions", "replication", "cleanup", "schema", "status"):
            table.add_column(column, overflow="fold")
        for c in checks:
            status = c.status + ("".join(f"\n{d}" for d in c.differences))
            table.add_row(
                c.spec.name,
                str(c.spec.partitions),
                str(c.spec.replication),
                c.spec.cleanup_policy,
                c.spec.value_schema or "",
                f"[{_STYLE[c.status]}]{status}[/]",
            )
        out.print(table)
    if any(c.status in ("differs", "missing") for c in checks):
        raise typer.Exit(1)


def _settings_line(app_name: str, folder: Path) -> str | None:
    """Which topic file the settings come from, or which folders of topic files lack one.

    Nothing when no file was found and no ``topics/`` folder of the user's is near:
    an app without a topic file is the common case.
    """
    from alto_stream import settings
    from alto_stream.topics import topic_file_path

    path = topic_file_path(app_name, folder)
    if path.is_file():
        return f"topic settings from {path}"
    if os.environ.get(settings.TOPICS_DIR_ENV):
        return f"no topic file {path} ({settings.TOPICS_DIR_ENV} is set): the defaults"
    builtin = settings.topics_dir().resolve()
    near = dict.fromkeys(
        str(f / "topics")
        for f in (folder, Path.cwd())
        if (f / "topics").is_dir() and (f / "topics").resolve() != builtin
    )
    if near:
        return f"no topic file {path.name} in {' or '.join(near)}: the defaults"
    return None


@app.command()
def grant(
    app_ref: Annotated[str, typer.Argument(metavar="APP", help="The app, as module:attribute.")],
    user: Annotated[
        str, typer.Option("--user", "-u", help="The user (SASL name or certificate CN).")
    ],
    bootstrap: Bootstrap = None,
    as_json: JsonFlag = False,
) -> None:
    """Allow USER what APP's workers and commands need, on a cluster with ACLs.

    Prefixed ACLs on names starting with "<app>.": its topics (read, write,
    create, describe, describe configs), its stages' consumer groups (read,
    describe) and transactional ids (write, describe). Run it as a user that
    may alter ACLs (the super user of `broker start --security ... --acl`).
    """
    from alto_stream.ops.loading import load_topology
    from alto_stream.runtime.kafka import KafkaOps

    with handled():
        _, topology = load_topology(app_ref)
        ops = KafkaOps(connect(bootstrap))
        made = asyncio.run(ops.grant(user, f"{topology.app}."))
    if as_json:
        emit_json([dataclasses.asdict(g) for g in made])
        return
    table = Table("resource", "names", "operation", title=f"allowed to User:{user}")
    for g in made:
        table.add_row(g.resource, f"{g.prefix}*", g.operation)
    out.print(table)


@app.command()
def delete(
    app_ref: Annotated[str, typer.Argument(metavar="APP", help="The app, as module:attribute.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask: delete.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list the topics that would go.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Delete even while the app's workers run.")
    ] = False,
    bootstrap: Bootstrap = None,
    as_json: JsonFlag = False,
) -> None:
    """Delete the app's topics (input, outputs, dead letters, changelogs) and what they hold.

    Refused while the app's workers run (any member in a stage's group) unless
    --force. Asks before deleting unless --yes (or --dry-run, which deletes
    nothing). The groups' committed offsets of the deleted topics go with them.
    """
    from alto_stream.errors import ConfigError
    from alto_stream.ops.loading import load_topology
    from alto_stream.ops.topics import delete_app_topics, running_workers
    from alto_stream.runtime.kafka import KafkaOps

    with handled():
        _, topology = load_topology(app_ref)
        ops = KafkaOps(connect(bootstrap))
        if dry_run:  # lists what would go, and says whether the delete would be refused
            running = None if force else asyncio.run(running_workers(ops, topology))
            if running:
                err.print(f"{running}: the delete would be refused without --force")
            found = asyncio.run(delete_app_topics(ops, topology, dry_run=True, force=True))
        else:
            found = asyncio.run(delete_app_topics(ops, topology, dry_run=True, force=force))
        deleted: list[str] = []
        if found and not dry_run:
            if not yes and not sys.stdin.isatty():
                raise ConfigError(
                    f"deleting the {len(found)} topics of app {topology.app} needs a yes: "
                    "no terminal to ask on; fix: --yes (or --dry-run to list them)"
                )
            if not yes and not typer.confirm(
                f"delete the {len(found)} topics of app {topology.app}, and every record in them?",
                err=True,
            ):
                raise typer.Exit(1)
            running = asyncio.run(running_workers(ops, topology)) if force else None
            deleted = asyncio.run(delete_app_topics(ops, topology, force=force))
            if running and deleted:
                err.print(
                    f"{running}: each stops with an error (exit 2, not restarted by `up`) "
                    "once it finds a topic it reads gone; start them again after "
                    f"`alto-stream topics apply {shlex.quote(app_ref)}`"
                )
    if as_json:
        emit_json({"app": topology.app, "found": found, "deleted": deleted, "dry_run": dry_run})
        return
    if not found:
        out.print(f"app {topology.app} has no topics on this cluster")
        return
    verb = "would delete" if dry_run else "deleted"
    ours = set(topology.topic_names())
    for name in deleted if not dry_run else found:
        why = (
            "" if name in ours else " (used by none of its stages now: a stage removed or renamed)"
        )
        out.print(f"{verb} {name}{why}")


@app.command("list")
def list_topics(
    prefix: Annotated[str, typer.Option(help="Only topics whose name starts with this.")] = "",
    bootstrap: Bootstrap = None,
    as_json: JsonFlag = False,
) -> None:
    """List topics with their partitions, replication, cleanup policy and offsets in use.

    ``offsets`` is the end offset minus the first, over the partitions: the
    records, plus, on a topic written in transactions, a commit or abort marker
    per transaction and any aborted records, which no read_committed reader sees.
    """
    from alto_stream.runtime.kafka import KafkaOps

    with handled():
        ops = KafkaOps(connect(bootstrap))

        async def run() -> list[dict[str, object]]:
            names = [n for n in await ops.list_topics() if n.startswith(prefix)]
            states = await ops.describe_topics(names)
            return [
                {
                    "topic": s.name,
                    "partitions": s.partitions,
                    "replication": s.replication,
                    "cleanup_policy": s.configs.get("cleanup.policy"),
                    "offsets": sum(end - first for first, end in s.offsets.values()),
                }
                for s in (states[n] for n in names if n in states)
            ]

        rows = asyncio.run(run())
    if as_json:
        emit_json(rows)
        return
    table = Table()
    for column in ("topic", "partitions", "replication", "cleanup", "offsets"):
        table.add_column(
            column, justify="left" if column in ("topic", "cleanup") else "right", overflow="fold"
        )
    for row in rows:
        table.add_row(*(str(row[k]) for k in row))
    out.print(table)


@app.command()
def describe(
    topic: Annotated[str, typer.Argument(help="The topic's name.")],
    bootstrap: Bootstrap = None,
    as_json: JsonFlag = False,
) -> None:
    """Show a topic's partitions (first and end offsets), replication and configs."""
    from alto_stream.ops.topics import describe_topic
    from alto_stream.runtime.kafka import KafkaOps

    with handled():
        state = asyncio.run(describe_topic(KafkaOps(connect(bootstrap)), topic))
    if as_json:
        emit_json(
            {
                "topic": state.name,
                "partitions": state.partitions,
                "replication": state.replication,
                "configs": state.configs,
                "offsets": {str(p): {"first": f, "end": e} for p, (f, e) in state.offsets.items()},
            }
        )
        return
    out.print(
        f"[bold]{state.name}[/]: {state.partitions} partitions, replication {state.replication}"
    )
    configs = Table("config", "value", title="configs")
    for key in _SHOWN_CONFIGS:
        if key in state.configs:
            configs.add_row(key, state.configs[key])
    out.print(configs)
    parts = Table("partition", "first offset", "end offset", "offsets", title="partitions")
    for partition, (first, end) in sorted(state.offsets.items()):
        parts.add_row(str(partition), str(first), str(end), str(end - first))
    out.print(parts)
