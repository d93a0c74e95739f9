"""``alto-stream broker``: install, start, inspect and stop the local Apache Kafka cluster.

``start`` prints only the bootstrap address on stdout (progress goes to
stderr), so ``BOOTSTRAP=$(alto-stream broker start)`` works in scripts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from alto_stream import broker

__all__ = ["DEGRADED_EXIT", "app", "cluster_state"]

app = typer.Typer(
    help="Install, start, inspect and stop a local Apache Kafka (KRaft) cluster.",
    no_args_is_help=True,
)
_err = Console(stderr=True, highlight=False, soft_wrap=True)  # lines a script may eval
_out = Console(highlight=False, soft_wrap=True)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        "-d",
        help="Cluster directory (config, data, logs, pids). Default: <ALTO_HOME>/broker.",
    ),
]


@app.command()
def install(
    force: Annotated[bool, typer.Option(help="Resolve the jars again even if present.")] = False,
) -> None:
    """Fetch Apache Kafka's broker jars with Maven (or check KAFKA_HOME); print their directory."""
    began = time.monotonic()
    libs = broker.install(force=force)
    _err.print(f"Apache Kafka {broker.KAFKA_VERSION} ready ({time.monotonic() - began:.1f} s)")
    _out.print(str(libs))


@app.command()
def start(
    brokers: Annotated[
        int | None,
        typer.Option("--brokers", "-n", min=1, help="Nodes in a new cluster [default: 1]."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            "-p",
            help="First client port; node i uses P+i-1; 0: any free [default: 9092].",
        ),
    ] = None,
    data_dir: DataDir = None,
    controller_port: Annotated[
        int | None, typer.Option(help="First controller port [default: port + 100].")
    ] = None,
    heap: Annotated[str, typer.Option(help="JVM heap per node.")] = broker.DEFAULT_HEAP,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the cluster.")] = 90.0,
    security: Annotated[
        str | None,
        typer.Option(
            "--security",
            help="Add a secured client listener to a new cluster: "
            "tls, mtls, sasl-plain, sasl-scram or sasl-ssl (see docs/security.md).",
            show_default=False,
        ),
    ] = None,
    acl: Annotated[
        bool, typer.Option("--acl", help="With --security: enforce ACLs (StandardAuthorizer).")
    ] = False,
    host: Annotated[
        str | None,
        typer.Option(
            help="Address the nodes listen on and advertise; other hosts' workers reach "
            "them by it [default: 127.0.0.1]."
        ),
    ] = None,
) -> None:
    """Start a KRaft cluster (on 127.0.0.1 or --host), wait until it answers, print its bootstrap.

    An existing data dir restarts the cluster it holds, with its data. With
    --security, the address printed is the secured listener's, and the
    settings to use it go to stderr (and <data dir>/security/client.env).
    """
    began = time.monotonic()
    cluster = broker.start(
        brokers,
        port,
        data_dir,
        controller_port=controller_port,
        heap=heap,
        timeout=timeout,
        security=security,
        acl=acl,
        host=host,
    )
    nodes = len(cluster.nodes)
    if cluster.already_running:
        _err.print(f"already running: {nodes} node(s) in {cluster.data_dir}")
    else:
        took = time.monotonic() - began
        where = f"{nodes} node(s) in {cluster.data_dir}"
        if 0 < len(cluster.started) < nodes:  # a node of a running cluster brought back
            ids = ", ".join(str(n) for n in cluster.started)
            where = f"node(s) {ids} of the {nodes} in {cluster.data_dir} (the others were running)"
        _err.print(f"started Apache Kafka {broker.KAFKA_VERSION}: {where} ({took:.1f} s)")
    if cluster.security is not None:
        _print_security(cluster.security)
    _out.print(cluster.bootstrap)


def _print_security(profile: broker.SecureProfile) -> None:
    acl = ", ACLs on (alto-limited may do what topics grant gave it)" if profile.acl else ""
    _err.print(f"secured listener: {profile.mode} ({profile.protocol}{acl}); to connect:")
    for key, value in profile.client_env().items():
        _err.print(f"export {key}={value}", markup=False)
    where = profile.files / "client.env"
    _err.print(f"(also in {where}; passwords in *.password files, mode 0600)")


@app.command()
def status(
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show nodes, ports, pids and topics.

    Exit status 0: every node runs and the cluster answers; 3: degraded (a node is
    down, the others answer); 1: not running (or not answering).
    """
    report = broker.status(data_dir)
    state, code = cluster_state(report)
    if as_json:
        # "running" is every node's; "state" says degraded too (the exit status's word).
        _out.print(json.dumps({**report.to_dict(), "state": state.split(":")[0]}, indent=2))
    elif not report.nodes:
        _err.print(f"no cluster in {report.data_dir} (start one with `alto-stream broker start`)")
    else:
        _print_status(report, state)
    if code:
        raise typer.Exit(code)


DEGRADED_EXIT = 3
"""``broker status``'s exit status when some nodes are down and the others answer."""


def cluster_state(report: broker.ClusterStatus) -> tuple[str, int]:
    """What ``broker status`` says of the cluster, and its exit status (0, 3 or 1)."""
    alive = sum(node.alive for node in report.nodes)
    if report.running:
        return "running", 0
    if alive and report.answering:
        # Not "not running": a replicated cluster serves on with a node down.
        return f"degraded: {alive} of {len(report.nodes)} nodes running, answering", DEGRADED_EXIT
    if alive:
        return f"not answering: {alive} of {len(report.nodes)} nodes running", 1
    return "not running", 1


def _print_status(report: broker.ClusterStatus, state: str) -> None:
    _out.print(f"cluster {report.cluster_id} in {report.data_dir}: {state}")
    _out.print(f"bootstrap: {report.bootstrap}")
    if report.internal is not None:
        _out.print(
            f"internal listener: {report.internal} (PLAINTEXT, a super user: the nodes' own, "
            "not for clients)"
        )
    nodes = Table("node", "port", "controller port", "pid", "alive")
    for node in report.nodes:
        pid = str(node.pid) if node.pid else "-"
        nodes.add_row(
            str(node.node_id),
            str(node.port),
            str(node.controller_port),
            pid,
            "yes" if node.alive else "no",
        )
    _out.print(nodes)
    if report.answering:
        topics = [t for t in report.topics if not t.internal]
        table = Table("topic", "partitions", "replication", title=f"{len(topics)} topic(s)")
        for topic in topics:
            table.add_row(topic.name, str(len(topic.partitions)), str(topic.replication))
        _out.print(table)


@app.command()
def stop(
    data_dir: DataDir = None,
    timeout: Annotated[float, typer.Option(help="Seconds before SIGTERM becomes SIGKILL.")] = 30.0,
) -> None:
    """Stop every node: SIGTERM, then SIGKILL after the timeout."""
    began = time.monotonic()
    stopped = broker.stop(data_dir, timeout=timeout)
    if stopped:
        ids = ", ".join(map(str, stopped))
        _err.print(f"stopped node(s) {ids} ({time.monotonic() - began:.1f} s)")
    else:
        _err.print("not running: nothing to stop")
