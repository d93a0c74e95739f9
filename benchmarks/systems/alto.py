"""The alto System of ``alto-stream bench APP --system alto``: the app's worker processes.

``start`` creates the app's topics under a fresh name (``workers.<app>:build('<app>-<hex>')``:
no record of an earlier run is read again), starts ``alto-stream up`` with the replicas,
``--llm`` and the ``ALTO_LLM_*``/``ALTO_INDEX_DIR`` environment of the :class:`BenchConfig`,
and waits for its ``--ready-file`` (every worker has its partitions). ``run`` pushes one
query onto the input topic under the harness's query id and waits on that query's future;
one shared reader of the app's partial-result topic (:data:`PARTIAL_STAGE`) and its output
topic dispatches every record to its query: a partial calls ``on_partial``, the final
(depth 0) resolves the future. ``close`` stops the workers and deletes the run's topics
(unless ``keep_topics``: ``bench --keep-topics``), so that runs do not pile them up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alto_stream.app import Topology
from alto_stream.client import Client
from alto_stream.errors import AltoError, DecodeError
from alto_stream.message import HEADER_ADMITTED, MessageCodec
from alto_stream.ops.loading import load_topology
from alto_stream.ops.supervisor import error_lines
from alto_stream.ops.topics import delete_app_topics
from alto_stream.runtime.kafka import KafkaOps, KafkaTransport
from alto_stream.transport import InRecord, Reader
from benchmarks.systems.base import BenchConfig
from benchmarks.systems.process import spawn, stop_group

__all__ = ["PARTIAL_STAGE", "START_FAILURES", "AltoSystem", "failing_to_start"]

log = logging.getLogger(__name__)

PARTIAL_STAGE = {
    "rag": "generate",  # the answer's sentences as they are generated
    "fanout": "answer_sub",  # each sub-question's answer
    "factcheck": "sentence_report",  # each sentence's verdicts
    "cove": "check",  # each verification question's answer
}
"""The stage whose output records are the app's partial results."""

PARTITIONS = 8
"""Partitions of every topic of a bench run: room for up to 8 replicas of a stage."""


START_FAILURES = 3
"""Failed starts (``error:`` lines in one worker's log) after which the bench gives up."""


def failing_to_start(logs: Path) -> str | None:
    """A worker that failed to start ``START_FAILURES`` times, with its error; None if none.

    ``up`` restarts such a worker for ever (a broker may come back); a benchmark
    waiting for it would wait out its whole ready time-out in silence.
    """
    for path in sorted(logs.glob("*.log")):
        errors = error_lines(path)
        if len(errors) >= START_FAILURES:
            return f"worker {path.stem} failed to start {len(errors)} times: {errors[-1]}"
    return None


class AltoSystem:
    """One app served by ``alto-stream up`` worker processes on Kafka (see the module doc)."""

    name = "alto"

    def __init__(
        self, config: BenchConfig, bootstrap: str, *, ready_timeout: float = 900.0
    ) -> None:
        if config.app not in PARTIAL_STAGE:
            raise AltoError(f"unknown app {config.app!r}; the apps are {', '.join(PARTIAL_STAGE)}")
        self.config = config
        self.bootstrap = bootstrap
        self.ready_timeout = ready_timeout
        self.app_name = f"{config.app}-{uuid.uuid4().hex[:8]}"
        self.app_ref = f"workers.{config.app}:build({self.app_name!r})"
        self.workdir = Path(config.workdir) / self.app_name
        self.transport = KafkaTransport(bootstrap)
        self._topology: Topology | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._client: Client | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._waiting: dict[str, tuple[asyncio.Future[str], Callable[[], None]]] = {}
        self.admitted: dict[str, float] = {}
        """Query id -> when admission let it in (epoch s; with an admission limit only)."""

    @property
    def topology(self) -> Topology:
        """The app's topology under its fresh name."""
        if self._topology is None:
            _, self._topology = load_topology(self.app_ref)
        return self._topology

    def environment(self) -> dict[str, str]:
        """The workers' environment: the LLM, its priority and the index, from the config."""
        env = dict(os.environ, ALTO_BOOTSTRAP_SERVERS=self.bootstrap)
        env["ALTO_LLM_BACKEND"] = self.config.llm_backend
        env["ALTO_LLM_PRIORITY"] = "1" if self.config.priority else "0"
        if self.config.llm_seed is not None:
            env["ALTO_LLM_SEED"] = str(self.config.llm_seed)
        for key, value in (
            ("ALTO_LLM_URL", self.config.llm_url),
            ("ALTO_LLM_MODEL", self.config.llm_model),
            ("ALTO_INDEX_DIR", self.config.index_dir),
        ):
            if value:
                env[key] = value
        env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
        return env

    def command(self, ready_file: Path) -> list[str]:
        """The ``alto-stream up`` command line."""
        cmd = [sys.executable, "-m", "alto_stream.cli", "up", self.app_ref]
        cmd += ["--llm", self.config.llm_backend, "--json", "--bootstrap-servers", self.bootstrap]
        cmd += ["--ready-file", str(ready_file), "--log-dir", str(self.workdir / "logs")]
        for stage, count in sorted(self.config.replicas.items()):
            cmd += ["--replicas", f"{stage}={count}"]
        if self.config.admission is not None:
            cmd += ["--admission", str(self.config.admission)]
        return cmd

    async def start(self) -> None:
        """Create the topics, start the workers, wait until ready, start the results reader."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        await self.transport.ensure_topics(self.topology.topic_specs(partitions=PARTITIONS))
        ready = self.workdir / "ready.json"
        cmd = self.command(ready)
        log.info("starting %s", " ".join(cmd))
        self._process = spawn(cmd, log=self.workdir / "up.log", env=self.environment())
        await self._wait_ready(ready)
        self._client = Client(self.topology, self.transport)
        await self._client.__aenter__()
        reader = self.transport.reader(self._topics(), start_time=time.time() - 1.0)
        await reader.start()
        self._reader_task = asyncio.create_task(self._dispatch(reader))

    def _topics(self) -> list[str]:
        partial = self.topology.plan(PARTIAL_STAGE[self.config.app]).output_topic
        return [partial, *self.topology.output_topics().values(), *self._first_topics()]

    def _first_topics(self) -> list[str]:
        """The output topics of the stages that read the app's input (with admission)."""
        if self.config.admission is None:
            return []
        topology = self.topology
        return [
            plan.output_topic
            for plan in topology.stages.values()
            if plan.input_topic == topology.input_topic
        ]

    async def _wait_ready(self, ready: Path) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while not ready.exists():  # noqa: ASYNC240 (a stat, 4 times a second)
            assert self._process is not None
            if self._process.poll() is not None:
                raise AltoError(
                    f"alto-stream up exited ({self._process.returncode}) before it was ready; "
                    f"see {self.workdir / 'up.log'}"
                )
            if time.monotonic() > deadline:
                raise AltoError(f"the workers were not ready within {self.ready_timeout} s")
            if failing := failing_to_start(self.workdir / "logs"):
                raise AltoError(f"{failing}; see {self.workdir / 'logs'}")
            await asyncio.sleep(0.25)

    async def run(self, query_id: str, question: str, on_partial: Callable[[], None]) -> str:
        """Push the query under ``query_id``; its final result's text.

        Raises :class:`QueryFailedError` when the final is an error or time-out marker.
        """
        if self._client is None:
            raise AltoError("start() the system first")
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting[query_id] = (future, on_partial)
        try:
            await self._client.push({"text": question}, query_id=query_id)
            return await future
        finally:
            self._waiting.pop(query_id, None)

    async def _dispatch(self, reader: Reader) -> None:
        """Partials to ``on_partial``, finals to the query's future (each once)."""
        codec = self.topology.codec()
        seen: set[str] = set()
        first = set(self._first_topics())
        try:
            while True:
                for record in await reader.fetch(0.2, 500):
                    if record.topic in first:
                        self._admitted(record, codec)
                        continue
                    try:
                        envelope = codec.decode(record.value, record.headers)
                    except DecodeError:
                        continue
                    ancestry = envelope.ancestry
                    entry = self._waiting.get(ancestry.query_id)
                    if entry is None or ancestry.id in seen or ancestry.kind.name == "END":
                        continue
                    seen.add(ancestry.id)
                    future, on_partial = entry
                    if ancestry.depth == 0:
                        if future.done():
                            continue
                        if envelope.kind.is_marker:
                            # Failed, as a LangGraph run that raises: a row with an error,
                            # not a fast completion counted in the latencies.
                            future.set_exception(
                                QueryFailedError(f"{envelope.kind.value}: {ancestry.reason}")
                            )
                        else:
                            future.set_result(_text(envelope.value, ancestry.reason))
                    elif not envelope.kind.is_marker:
                        on_partial()
        finally:
            await reader.stop()

    def _admitted(self, record: InRecord, codec: MessageCodec) -> None:
        """Note when the record's query was admitted (its ``alto.admitted`` header)."""
        stamp = dict(record.headers or []).get(HEADER_ADMITTED)
        if not stamp:
            return
        try:
            query_id = codec.decode_ancestry(record.headers).query_id
        except DecodeError:
            return
        at = int(stamp) / 1000
        self.admitted[query_id] = min(at, self.admitted.get(query_id, at))

    async def close(self) -> None:
        """Stop the reader, the client and the workers (SIGINT: ``up`` stops them cleanly)."""
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
        if self._client is not None:
            await self._client.__aexit__(None, None, None)
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(self._process.wait, 60)
            # Whatever of its group is left (a worker it did not stop): TERM, then KILL.
            await asyncio.to_thread(stop_group, self._process)
        if not self.config.keep_topics and self._topology is not None:
            await self._delete_topics()

    async def _delete_topics(self) -> None:
        """Delete the run's topics (their records, and so the groups' offsets): none pile up."""
        try:
            # The workers are stopped (killed, at worst): their groups' members need not
            # have left yet, hence force.
            gone = await delete_app_topics(KafkaOps(self.transport), self.topology, force=True)
        except AltoError as exc:
            log.warning("could not delete the topics of %s: %s", self.app_name, exc)
            return
        log.info("deleted the %d topics of %s", len(gone), self.app_name)


class QueryFailedError(AltoError):
    """The query's final record is an error (or time-out) marker: the query failed."""


def _text(value: dict[str, Any] | None, reason: str | None) -> str:
    """A final record as text: its JSON document, or an error marker's reason."""
    if value is None:
        return json.dumps({"error": reason or "no result"})
    return str(value.get("json", json.dumps(value)))
