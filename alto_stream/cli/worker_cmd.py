"""``alto-stream worker APP STAGE``: run one stage's worker(s).

With one replica the worker runs in this process (what a container or a
process manager starts); with ``--replicas N`` this process supervises N
worker processes of the same stage, restarting crashed ones with backoff.
"""

from __future__ import annotations

import asyncio
import enum
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from alto_stream.cli._opsutil import Bootstrap, connect, err, handled

__all__ = ["Delivery", "LLMOption", "register", "use_llm", "worker"]


class Delivery(enum.StrEnum):
    """The delivery modes (see :mod:`alto_stream.runtime.worker`)."""

    AT_LEAST_ONCE = "at-least-once"
    TRANSACTIONAL = "transactional"


DeliveryOption = Annotated[
    Delivery,
    typer.Option(
        "--delivery",
        help="at-least-once (outputs made effectively-once by the ancestry) or transactional.",
    ),
]


class LLMBackend(enum.StrEnum):
    """The LLM backends (see :mod:`alto_stream.components.llm`)."""

    LLAMA_CPP = "llama_cpp"
    OPENAI = "openai"
    VLLM = "vllm"


LLMOption = Annotated[
    LLMBackend | None,
    typer.Option(
        "--llm",
        help="LLM backend for stages that call alto_stream.components.llm (sets "
        "ALTO_LLM_BACKEND; model and server from ALTO_LLM_MODEL, ALTO_LLM_URL).",
    ),
]


def use_llm(backend: LLMBackend | None) -> None:
    """Make ``backend`` this process's (and its workers') LLM backend, before the app loads."""
    if backend is not None:
        os.environ["ALTO_LLM_BACKEND"] = backend.value


def worker(
    app_ref: Annotated[str, typer.Argument(metavar="APP", help="The app, as module:attribute.")],
    stage: Annotated[str, typer.Argument(help="The stage to run.")],
    replicas: Annotated[
        int, typer.Option("--replicas", "-n", min=1, help="Worker processes to run.")
    ] = 1,
    delivery: DeliveryOption = Delivery.AT_LEAST_ONCE,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve Prometheus metrics on this port (replica i of N: port + i).", min=1
        ),
    ] = None,
    stats_file: Annotated[
        Path | None, typer.Option(hidden=True, help="Write a JSON stats snapshot here.")
    ] = None,
    replica_id: Annotated[str, typer.Option(hidden=True, help="This replica's label.")] = "0",
    llm: LLMOption = None,
    bootstrap: Bootstrap = None,
) -> None:
    """Run STAGE of APP until SIGTERM or Ctrl-C (graceful: in-flight records finish)."""
    from alto_stream.ops.loading import load_app

    use_llm(llm)  # inherited by replicas started below
    with handled():
        app = load_app(app_ref)
        app.topology().plan(stage)  # unknown stage: exit 2 before anything starts
        transport = connect(bootstrap)
        if replicas > 1:
            _run_replicas(app_ref, stage, replicas, delivery, metrics_port, transport.bootstrap)
            return
        from alto_stream.ops import eventloop
        from alto_stream.ops.worker import WorkerSetup, run_worker

        setup = WorkerSetup(
            stage=stage,
            delivery=delivery.value,
            replica=replica_id,
            metrics_port=metrics_port,
            stats_file=stats_file,
        )
        eventloop.run(run_worker(app, transport, setup))


def worker_argv(
    app_ref: str,
    stage: str,
    *,
    bootstrap: str,
    delivery: str,
    replica: str,
    metrics_port: int | None = None,
    stats_file: Path | None = None,
) -> list[str]:
    """The command line of one worker process."""
    argv = [sys.executable, "-m", "alto_stream.cli", "worker", app_ref, stage]
    argv += ["--bootstrap-servers", bootstrap, "--delivery", delivery, "--replica-id", replica]
    if metrics_port is not None:
        argv += ["--metrics-port", str(metrics_port)]
    if stats_file is not None:
        argv += ["--stats-file", str(stats_file)]
    return argv


def _run_replicas(
    app_ref: str,
    stage: str,
    replicas: int,
    delivery: Delivery,
    metrics_port: int | None,
    bootstrap: str,
) -> None:
    from alto_stream.ops.supervisor import ProcessSpec, Supervisor, supervise

    specs = [
        ProcessSpec(
            f"{stage}-{i}",
            worker_argv(
                app_ref,
                stage,
                bootstrap=bootstrap,
                delivery=delivery.value,
                replica=str(i),
                metrics_port=None if metrics_port is None else metrics_port + i,
            ),
            stage=stage,
        )
        for i in range(replicas)
    ]
    supervisor = Supervisor(specs)

    async def report() -> None:
        for event in supervisor.poll():
            err.print(event)

    err.print(f"supervising {replicas} workers of stage {stage} (Ctrl-C stops them)")
    asyncio.run(supervise(supervisor, tick=report))


def register(root: typer.Typer) -> None:
    """Add ``worker`` to the root command."""
    root.command("worker")(worker)
