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
from typing import TYPE_CHECKING, Annotated

import typer

from alto_stream.cli._opsutil import Bootstrap, connect, err, fail, handled

if TYPE_CHECKING:
    from alto_stream.settings import GroupTiming

__all__ = [
    "AdmissionOption",
    "AdmissionTargetOption",
    "Delivery",
    "LLMOption",
    "group_timing",
    "register",
    "use_admission",
    "use_llm",
    "worker",
]


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


AdmissionOption = Annotated[
    int | None,
    typer.Option(
        "--admission",
        min=0,
        help="At most N queries of the app in flight; the others wait in the input topic "
        "and are admitted oldest first (enforced by the stage reading the app's input; "
        "sets ALTO_ADMISSION; 0: no limit; default: the app's App(admission=...)).",
    ),
]


AdmissionTargetOption = Annotated[
    float | None,
    typer.Option(
        "--admission-target",
        min=0.001,
        help="Seconds wanted for admitted queries (admission to final result, p90): the "
        "admission limit becomes a ceiling and the first stage admits fewer while they "
        "take longer (sets ALTO_ADMISSION_TARGET; default: App(admission_target=...)).",
    ),
]


def use_admission(limit: int | None, target: float | None = None) -> None:
    """Make ``limit`` (and ``target``) the admission of this process's (and its workers') app."""
    from alto_stream.ops.worker import ADMISSION_ENV, TARGET_ENV

    if limit is not None:
        os.environ[ADMISSION_ENV] = str(limit)
    if target is not None:
        os.environ[TARGET_ENV] = repr(target)


SessionTimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--session-timeout",
        min=0.001,
        help="Seconds before the group hands a silent (dead) worker's partitions to others "
        "(env ALTO_SESSION_TIMEOUT; default 6; the broker allows 6 to 1800 unless "
        "configured otherwise).",
    ),
]
HeartbeatOption = Annotated[
    float | None,
    typer.Option(
        "--heartbeat-interval",
        min=0.001,
        help="Seconds between a worker's heartbeats, at most a third of the session timeout "
        "(env ALTO_HEARTBEAT_INTERVAL; default 0.5).",
    ),
]
MaxPollOption = Annotated[
    float | None,
    typer.Option(
        "--max-poll-interval",
        min=0.001,
        help="Seconds a worker may go without fetching before it leaves the group "
        "(env ALTO_MAX_POLL_INTERVAL; default 300).",
    ),
]


def use_llm(backend: LLMBackend | None) -> None:
    """Make ``backend`` this process's (and its workers') LLM backend, before the app loads."""
    if backend is not None:
        os.environ["ALTO_LLM_BACKEND"] = backend.value


def group_timing(
    session_timeout: float | None,
    heartbeat_interval: float | None,
    max_poll_interval: float | None,
    instance_id: str | None = None,
) -> GroupTiming:
    """The flags given, else the environment, else the defaults (ConfigError when invalid)."""
    from alto_stream.settings import GroupTiming

    return GroupTiming.from_env(
        session_timeout=session_timeout,
        heartbeat_interval=heartbeat_interval,
        max_poll_interval=max_poll_interval,
        instance_id=instance_id,
    )


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
    replica_id: Annotated[
        str | None,
        typer.Option(hidden=True, help="This replica's label [default: pid<process id>]."),
    ] = None,
    llm: LLMOption = None,
    admission: AdmissionOption = None,
    admission_target: AdmissionTargetOption = None,
    session_timeout: SessionTimeoutOption = None,
    heartbeat_interval: HeartbeatOption = None,
    max_poll_interval: MaxPollOption = None,
    instance_id: Annotated[
        str | None,
        typer.Option(
            "--instance-id",
            help="Static group membership (KIP-345): a worker restarted with the same id "
            "within the session timeout gets its partitions back without a rebalance "
            "(env ALTO_GROUP_INSTANCE_ID; with --replicas N, replica i gets ID-i).",
        ),
    ] = None,
    bootstrap: Bootstrap = None,
) -> None:
    """Run STAGE of APP until SIGTERM or Ctrl-C (graceful: in-flight records finish)."""
    from alto_stream.ops.loading import load_app
    from alto_stream.runtime.kafka import KafkaTransport

    use_llm(llm)  # inherited by replicas started below
    use_admission(admission, admission_target)
    with handled():
        app = load_app(app_ref)
        app.topology().plan(stage)  # unknown stage: exit 2 before anything starts
        timing = group_timing(session_timeout, heartbeat_interval, max_poll_interval, instance_id)
        transport = KafkaTransport(_reach_kafka(bootstrap), timing=timing)
        if replicas > 1:
            _run_replicas(
                app_ref, stage, replicas, delivery, metrics_port, transport.bootstrap, timing
            )
            return
        from alto_stream.ops import eventloop, logs
        from alto_stream.ops.worker import WorkerSetup, replica_label, run_worker

        # This process runs one worker: label what it logs outside the worker's task too.
        logs.bind(app=app.name, stage=stage, replica=replica_label(replica_id))
        setup = WorkerSetup(
            stage=stage,
            delivery=delivery.value,
            replica=replica_id,
            app_ref=app_ref,
            metrics_port=metrics_port,
            stats_file=stats_file,
        )
        eventloop.run(run_worker(app, transport, setup))


def _reach_kafka(bootstrap: str | None) -> str:
    """The bootstrap address, once Kafka answers; exit 1, not 2, if it does not under a supervisor.

    A supervisor does not restart a worker that exits 2 (refused: a restart cannot
    help), but Kafka that does not answer may be back by the next restart.
    """
    from alto_stream.errors import BrokerError
    from alto_stream.ops.worker import PARENT_PID_ENV

    try:
        return connect(bootstrap).bootstrap
    except BrokerError as exc:
        if not os.environ.get(PARENT_PID_ENV):
            raise
        fail(str(exc), 1)


def worker_argv(
    app_ref: str,
    stage: str,
    *,
    bootstrap: str,
    delivery: str,
    replica: str,
    metrics_port: int | None = None,
    stats_file: Path | None = None,
    timing: GroupTiming | None = None,
) -> list[str]:
    """The command line of one worker process."""
    argv = [sys.executable, "-m", "alto_stream.cli", "worker", app_ref, stage]
    argv += ["--bootstrap-servers", bootstrap, "--delivery", delivery, "--replica-id", replica]
    if timing is not None:
        argv += ["--session-timeout", repr(timing.session_timeout)]
        argv += ["--heartbeat-interval", repr(timing.heartbeat_interval)]
        argv += ["--max-poll-interval", repr(timing.max_poll_interval)]
        if timing.instance_id is not None:
            argv += ["--instance-id", timing.instance_id]
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
    timing: GroupTiming,
) -> None:
    import dataclasses

    from alto_stream.ops.supervisor import ProcessSpec, Supervisor, supervise

    def replica_timing(i: int) -> GroupTiming:
        if timing.instance_id is None:
            return timing
        return dataclasses.replace(timing, instance_id=f"{timing.instance_id}-{i}")

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
                timing=replica_timing(i),
            ),
            stage=stage,
        )
        for i in range(replicas)
    ]
    supervisor = Supervisor(specs)
    shown = 0

    async def report() -> None:  # supervise() polls: the events are new since the last tick
        nonlocal shown
        for event in supervisor.events[shown:]:
            err.print(event, markup=False)
        shown = len(supervisor.events)

    err.print(f"supervising {replicas} workers of stage {stage} (Ctrl-C stops them)")
    asyncio.run(supervise(supervisor, tick=report))
    if note := supervisor.refused_note():
        fail(note)


def register(root: typer.Typer) -> None:
    """Add ``worker`` to the root command."""
    root.command("worker")(worker)
