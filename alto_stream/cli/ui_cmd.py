"""``alto-stream ui APP``: a live web view of the app on its Kafka cluster."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Annotated

import typer

from alto_stream.cli._opsutil import Bootstrap, bind_socket, connect, err, handled, parse_time

__all__ = ["register", "ui"]


def ui(
    app_ref: Annotated[str, typer.Argument(metavar="APP", help="The app, as module:attribute.")],
    port: Annotated[
        int, typer.Option(min=0, help="The port to serve on (0: any free one).")
    ] = 8765,
    host: Annotated[str, typer.Option(help="The address to serve on.")] = "127.0.0.1",
    metrics: Annotated[
        list[str] | None,
        typer.Option(
            "--metrics",
            "-m",
            help="A worker's metrics address: host:port, host:first-last (as `up "
            "--metrics-base-port` hands them out) or a URL (repeatable); adds replicas, in flight.",
        ),
    ] = None,
    history: Annotated[
        str, typer.Option(help="How far back to list queries and dead letters (e.g. 15m, 2h).")
    ] = "15m",
    bootstrap: Bootstrap = None,
) -> None:
    """Serve a live web page of APP: its topology with per-stage health, recent queries
    with their waterfalls, and the dead letters with a replay button.

    Everything is read from Kafka, so a remote cluster works the same way
    (give its bootstrap address). Ctrl-C stops it.
    """
    import time

    from alto_stream.errors import ConfigError

    with handled():
        try:
            from alto_stream.ui.cluster import KafkaCluster
            from alto_stream.ui.server import serve
            from alto_stream.ui.service import UiService
            from alto_stream.ui.stages import metrics_urls
        except ImportError as exc:
            raise ConfigError(
                f"the web view needs starlette and uvicorn ({exc}); fix: "
                "pip install 'alto-stream[ui]'"
            ) from exc
        from alto_stream.ops.loading import load_topology
        from alto_stream.ops.topics import missing_topics
        from alto_stream.runtime.kafka import KafkaOps

        _, topology = load_topology(app_ref)
        back = parse_time(history if history.startswith("-") else f"-{history}")
        urls = metrics_urls(metrics or [])
        transport = connect(bootstrap)
        ops = KafkaOps(transport)
        service = UiService(
            topology,
            transport,
            ops,
            cluster=KafkaCluster(ops),
            metrics_urls=urls,
            history=max(time.time() - back, 1.0),
            bootstrap=transport.bootstrap,
            missing_topics=lambda names: missing_topics(ops, names),
        )

        async def check_access() -> None:
            # Topics that ACLs hide look absent: say so now, not wait for them for ever.
            await ops.raise_if_denied(await missing_topics(ops, service.topics()))

        asyncio.run(check_access())
        sock = bind_socket(host, port)
        address = f"http://{host}:{sock.getsockname()[1]}/"
        err.print(f"app {topology.app} on {transport.bootstrap}: serving {address}")
        if not ipaddress.ip_address(sock.getsockname()[0]).is_loopback:
            err.print(
                f"warning: {host} is not a loopback address: whoever reaches this port can "
                "push queries and replay dead letters (the view has no log-in; docs/ui.md)"
            )
        typer.echo(address)  # for scripts: the one line on stdout
        serve(service, sock)


def register(root: typer.Typer) -> None:
    """Add ``ui`` to the root command."""
    root.command("ui")(ui)
