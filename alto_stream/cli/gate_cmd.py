"""``alto-stream gate URL``: a priority gate in front of an OpenAI-compatible server."""

from __future__ import annotations

from typing import Annotated

import typer

from alto_stream.cli._opsutil import bind_socket, err, handled

__all__ = ["gate", "register"]


def gate(
    upstream: Annotated[
        str,
        typer.Argument(metavar="URL", help="The server's base URL, e.g. http://127.0.0.1:8080/v1."),
    ],
    slots: Annotated[
        int,
        typer.Option(min=1, help="Generation requests forwarded at once (llama_cpp.server: 1)."),
    ] = 1,
    port: Annotated[
        int, typer.Option(min=0, help="The port to serve on (0: any free one).")
    ] = 8090,
    host: Annotated[str, typer.Option(help="The address to serve on.")] = "127.0.0.1",
    forward_priority: Annotated[
        bool,
        typer.Option(
            "--forward-priority",
            help="Leave the priority field in the requests forwarded (for a server that takes it).",
        ),
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(min=0.1, help="Seconds to wait for the server's next byte (then HTTP 504)."),
    ] = 600.0,
) -> None:
    """Serve URL's OpenAI API through a priority gate: at most SLOTS generation requests
    at once, and the waiting one with the lowest priority (the oldest query's) next.

    For servers that run requests in arrival order and ignore the priority field
    (llama_cpp.server, Ollama). Point the workers at the URL printed on stdout and
    make them send the priority: ALTO_LLM_URL=<it> ALTO_LLM_PRIORITY=1. Figures
    at /stats and /metrics. Ctrl-C stops it.
    """
    from alto_stream.errors import ConfigError

    with handled():
        try:
            import uvicorn

            from alto_stream.components.llm.gate_server import GateConfig, PriorityProxy
        except ImportError as exc:
            raise ConfigError(
                f"the gate needs httpx, starlette and uvicorn ({exc}); fix: "
                "pip install 'alto-stream[openai]'"
            ) from exc
        try:
            config = GateConfig(
                upstream, slots=slots, forward_priority=forward_priority, timeout=timeout
            )
        except ValueError as exc:
            raise ConfigError(
                f"{exc}; fix: give the server's URL, e.g. http://127.0.0.1:8080/v1"
            ) from exc
        sock = bind_socket(host, port)
        address = f"http://{host}:{sock.getsockname()[1]}/v1"
        err.print(f"gate: {slots} slot(s) in front of {upstream}: serving {address}")
        typer.echo(address)  # for scripts: the one line on stdout
        proxy = PriorityProxy(config)
        server = uvicorn.Server(
            uvicorn.Config(
                proxy.app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5
            )
        )
        server.run(sockets=[sock])


def register(root: typer.Typer) -> None:
    """Add ``gate`` to the root command."""
    root.command("gate")(gate)
