"""Start, inspect and stop a local KRaft cluster of Apache Kafka nodes.

How a node is brought up (its files written, its storage formatted, its JVM
launched, the wait until every broker answers) is in :mod:`alto_stream.broker.launch`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alto_stream.broker.config import (
    CONTROLLER_PORT_OFFSET,
    DEFAULT_HEAP,
    DEFAULT_PORT,
    HOST,
    Layout,
    check_host,
)
from alto_stream.broker.installer import find_java, install
from alto_stream.broker.launch import POLL, format_storage, launch, wait_ready, write_config
from alto_stream.broker.nodes import (
    NodeFiles,
    free_base_port,
    port_in_use,
    process_alive,
)
from alto_stream.broker.probe import TopicInfo, fetch_metadata
from alto_stream.broker.secured import SecureProfile, format_arguments, prepare
from alto_stream.errors import BrokerError, BrokerSettingsError, ConfigError
from alto_stream.settings import data_home

__all__ = ["Cluster", "ClusterStatus", "Node", "default_data_dir", "start", "status", "stop"]

logger = logging.getLogger("alto_stream.broker")


def default_data_dir() -> Path:
    """Where ``broker start`` keeps the cluster unless told otherwise: ``<data_home>/broker``."""
    return data_home() / "broker"


@dataclass(frozen=True)
class Node:
    """One combined broker + controller node."""

    node_id: int
    port: int
    controller_port: int
    directory: Path
    pid: int | None

    @property
    def alive(self) -> bool:
        """Whether the node's process runs."""
        return self.pid is not None


@dataclass(frozen=True)
class Cluster:
    """A running local cluster; ``bootstrap`` is what clients connect to."""

    bootstrap: str
    data_dir: Path
    cluster_id: str
    nodes: tuple[Node, ...]
    already_running: bool = False
    security: SecureProfile | None = None
    """The secured client listener (``start(security=...)``); ``bootstrap`` points at it."""
    started: tuple[int, ...] = ()
    """The ids of the nodes this ``start`` launched (the others were running)."""


@dataclass(frozen=True)
class ClusterStatus:
    """What ``broker status`` reports; ``nodes`` is empty when the data dir has no cluster."""

    data_dir: Path
    bootstrap: str | None
    cluster_id: str | None
    nodes: tuple[Node, ...]
    answering: bool
    brokers_registered: int
    topics: tuple[TopicInfo, ...] = field(default=())
    internal: str | None = None
    """A secured cluster's PLAINTEXT listener (its nodes' own; ``bootstrap`` is the secured one)."""

    @property
    def running(self) -> bool:
        """Whether every node runs and the cluster answers metadata requests."""
        return bool(self.nodes) and all(n.alive for n in self.nodes) and self.answering

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "data_dir": str(self.data_dir),
            "bootstrap": self.bootstrap,
            "internal_listener": self.internal,
            "cluster_id": self.cluster_id,
            "running": self.running,
            "answering": self.answering,
            "brokers_registered": self.brokers_registered,
            "nodes": [
                {
                    "node_id": n.node_id,
                    "port": n.port,
                    "controller_port": n.controller_port,
                    "pid": n.pid,
                    "alive": n.alive,
                    "directory": str(n.directory),
                }
                for n in self.nodes
            ],
            "topics": [
                {"name": t.name, "partitions": len(t.partitions), "replication": t.replication}
                for t in self.topics
                if not t.internal
            ],
        }


def _nodes(layout: Layout, data_dir: Path) -> tuple[Node, ...]:
    return tuple(
        Node(
            n, layout.broker_port(n), layout.controller_port_of(n), files.root, files.running_pid()
        )
        for n in layout.node_ids()
        for files in [NodeFiles(data_dir, n)]
    )


def _clean_stale(layout: Layout, data_dir: Path) -> None:
    for node_id in layout.node_ids():
        files = NodeFiles(data_dir, node_id)
        pid = files.pid()
        if pid is not None and not process_alive(pid, files.properties):
            logger.warning(
                "node %d: removed stale pid file %s (pid %d no longer runs this node's Kafka)",
                node_id, files.pid_file, pid,
            )  # fmt: skip
            files.clear_pid()


def _layout_for(
    data_dir: Path,
    brokers: int | None,
    port: int | None,
    controller_port: int | None,
    host: str | None = None,
) -> Layout:
    saved = Layout.load(data_dir)
    if saved is None:
        where = _check_local(check_host(host or HOST))
        if port == 0:
            port = free_base_port(brokers or 1, host=where)
            controller_port = controller_port or port + CONTROLLER_PORT_OFFSET
        return Layout.create(brokers or 1, port or DEFAULT_PORT, controller_port, where)
    if port == 0:
        port = None  # "any free port" accepts the ports the cluster already has
    asked = {"brokers": brokers, "port": port, "controller_port": controller_port, "host": host}
    for name, value in asked.items():
        if value is not None and value != getattr(saved, name):
            raise BrokerSettingsError(
                f"the cluster in {data_dir} has {name}={getattr(saved, name)}; got {name}={value}. "
                "A cluster's size, ports and host are fixed when its storage is formatted; fix: "
                f"start it as it is (omit the option), or use another --data-dir (or delete "
                f"{data_dir})"
            )
    return saved


def _check_local(host: str) -> str:
    """``host`` if this machine can listen on it; else :class:`ConfigError` (a usage error).

    Before, a free port was looked for on it, and none found: "no free range of
    1 broker + controller ports; fix: pass --port", for an address of another machine.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, 0))
        except OSError as exc:
            raise ConfigError(
                f"--host {host} is not an address of this machine (cannot listen on it: "
                f"{exc.strerror or exc}); fix: pass an address of this machine that the other "
                "hosts reach it by (`hostname -I` lists them), or leave --host out for 127.0.0.1"
            ) from None
    return host


def _check_ports(layout: Layout, node_ids: list[int]) -> None:
    for node_id in node_ids:
        for kind, port in (
            ("client", layout.broker_port(node_id)),
            ("controller", layout.controller_port_of(node_id)),
        ):
            if port_in_use(port, layout.host):
                raise BrokerError(
                    f"port {port} ({kind} port of node {node_id}) is already in use on "
                    f"{layout.host} (or that address is not this machine's); "
                    "expected it free to start Kafka; fix: stop what listens there, or pick "
                    "other ports with --port P (and a fresh --data-dir)"
                )


def start(
    brokers: int | None = None,
    port: int | None = None,
    data_dir: Path | None = None,
    *,
    controller_port: int | None = None,
    heap: str = DEFAULT_HEAP,
    timeout: float = 90.0,
    security: str | None = None,
    acl: bool = False,
    host: str | None = None,
) -> Cluster:
    """Start (or find running) a KRaft cluster of ``brokers`` nodes; return once it answers.

    A new data dir gets ``brokers`` (default 1) nodes on ``port`` (default 9092)
    onwards (``port=0``: any free ports); an existing one keeps the size and
    ports it was formatted with. ``host`` (default 127.0.0.1) is the address
    every node listens on and advertises to clients: another machine's workers
    reach the cluster by it; an existing data dir keeps the host it was made with.
    Already running: returns it with ``already_running=True``. Raises
    ``BrokerError`` when a port is taken, a node dies or ``timeout`` passes.
    ``security`` (a mode of :data:`alto_stream.broker.secured.MODES`) adds a
    secured client listener to a new cluster, ``acl`` Kafka's authorizer.
    """
    if security is not None and host not in (None, "127.0.0.1"):
        raise BrokerSettingsError(
            "--security with --host is not supported: the secured listener and its "
            "test certificates are for 127.0.0.1 only"
        )
    data_dir = (data_dir or default_data_dir()).resolve()
    layout = _layout_for(data_dir, brokers, port, controller_port, host)
    fresh = not any(NodeFiles(data_dir, n).formatted() for n in layout.node_ids())
    profile = prepare(data_dir, layout, security, acl, new=fresh)
    bootstrap = profile.bootstrap if profile is not None else layout.bootstrap
    _clean_stale(layout, data_dir)
    running = {n.node_id for n in _nodes(layout, data_dir) if n.alive}
    to_start = [n for n in layout.node_ids() if n not in running]
    if not to_start:
        wait_ready(layout, data_dir, {}, timeout)
        logger.debug("the cluster in %s is already running", data_dir)
        return Cluster(
            bootstrap, data_dir, layout.cluster_id, _nodes(layout, data_dir), True, profile
        )
    _check_ports(layout, to_start)
    libs = install()
    java = find_java()
    log4j = write_config(layout, data_dir, profile)
    format_storage(java, libs, layout, data_dir, log4j, format_arguments(profile))
    pids = {n: launch(java, libs, NodeFiles(data_dir, n), log4j, heap) for n in to_start}
    try:
        wait_ready(layout, data_dir, pids, timeout)
    except BrokerError:
        _terminate(layout, data_dir, set(pids), 10.0)
        raise
    return Cluster(
        bootstrap,
        data_dir,
        layout.cluster_id,
        _nodes(layout, data_dir),
        security=profile,
        started=tuple(to_start),
    )


def _terminate(layout: Layout, data_dir: Path, node_ids: set[int], timeout: float) -> list[int]:
    files = {n: NodeFiles(data_dir, n) for n in node_ids}
    pids = {n: f.running_pid() for n, f in files.items()}
    live = {n: pid for n, pid in pids.items() if pid is not None}
    for pid in live.values():
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(process_alive(pid) for pid in live.values()) and time.monotonic() < deadline:
        time.sleep(POLL)
    for node_id, pid in live.items():
        if process_alive(pid):
            logger.warning(
                "node %d (pid %d) ignored SIGTERM for %.0f s: killing it", node_id, pid, timeout
            )
            _signal(pid, signal.SIGKILL)
    while any(process_alive(pid) for pid in live.values()):
        time.sleep(0.05)
    for f in files.values():
        f.clear_pid()
    return sorted(live)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def stop(data_dir: Path | None = None, *, timeout: float = 30.0) -> list[int]:
    """Stop every node: SIGTERM, then SIGKILL after ``timeout`` s; returns the stopped node ids."""
    data_dir = (data_dir or default_data_dir()).resolve()
    layout = Layout.load(data_dir)
    if layout is None:
        return []
    _clean_stale(layout, data_dir)
    return _terminate(layout, data_dir, set(layout.node_ids()), timeout)


def status(data_dir: Path | None = None, *, topics: bool = True) -> ClusterStatus:
    """The cluster's nodes, processes and (when it answers) its topics."""
    data_dir = (data_dir or default_data_dir()).resolve()
    layout = Layout.load(data_dir)
    if layout is None:
        return ClusterStatus(data_dir, None, None, (), False, 0)
    nodes = _nodes(layout, data_dir)
    # Clients connect to a secured cluster's secured listener; its PLAINTEXT one (an
    # ANONYMOUS super user) is the nodes' own, and said to be so.
    profile = SecureProfile.load(data_dir)
    bootstrap = layout.bootstrap if profile is None else profile.bootstrap
    internal = None if profile is None else layout.bootstrap
    for node in nodes:
        if not node.alive:
            continue
        try:
            metadata = fetch_metadata(layout.host, node.port, topics=topics, timeout=2.0)
        except OSError:
            continue
        return ClusterStatus(
            data_dir,
            bootstrap,
            layout.cluster_id,
            nodes,
            True,
            len(metadata.brokers),
            metadata.topics,
            internal,
        )
    return ClusterStatus(data_dir, bootstrap, layout.cluster_id, nodes, False, 0, (), internal)
